"""Which engine runs the network: torch, or OpenVINO (int8, or fp32 weights computed in bf16) on x86 CPUs.

``auto`` is OpenVINO int8 on an x86 CPU where ``openvino`` is installed (about 0.4 of torch's bf16
forward on 2 cores, docs/benchmarks.md), torch everywhere else (CUDA, ARM, no OpenVINO). The engine
sits behind the same contract as the torch network: ``load_for_inference`` returns a ``Checkpoint``
whose ``model`` is either the torch ``RedSeg`` or an ``OpenVINORedSeg`` standing in for it, and
``model.inference`` runs either on the tiles (disc mapping, tiles, blending, calibration and masks
are the same code). The IRs are made from the checkpoint at first use (``model.openvino_export``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.checkpoint import Checkpoint, load_checkpoint
from model.config import RedSegConfig
from model.network import RedSeg, RedSegOutput
from model.precision import cpu_has_native_bf16

log = logging.getLogger("model.backends")

BACKENDS: tuple[str, ...] = ("auto", "torch", "openvino-int8", "openvino-bf16")
IR_KIND = {"openvino-int8": "int8", "openvino-bf16": "fp32"}
"""The IR each OpenVINO backend compiles (bf16 runs the fp32 IR with ``INFERENCE_PRECISION_HINT`` bf16)."""
PRECISION_HINT = {"openvino-int8": "bf16", "openvino-bf16": "bf16"}
"""The precision of the layers an IR keeps in floating point: bf16 (on CPUs that compute it natively, else
f32). int8's are the first conv and the output branches (in bf16 the first conv takes half its fp32 time,
about 5 % of the default model's forward, as torch's fast path computes it)."""


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def x86_cpu() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def resolve_backend(backend: str, device: torch.device | str) -> str:
    """The engine ``backend`` means on ``device``: ``auto`` is ``openvino-int8`` on an x86 CPU with OpenVINO
    installed, else ``torch``; OpenVINO asked for on a GPU or without the package is an error."""
    check_backend(backend)
    device = torch.device(device)
    if backend == "auto":
        return "openvino-int8" if device.type == "cpu" and x86_cpu() and openvino_installed() else "torch"
    if backend != "torch" and device.type != "cpu":
        raise ValueError(f"backend {backend} runs on the CPU, not on {device}: use torch (or auto) there")
    if backend != "torch" and not openvino_installed():
        raise RuntimeError(f"backend {backend} needs the openvino package (pip install openvino)")
    return backend


class OpenVINORedSeg(nn.Module):
    """A compiled OpenVINO model of a RedSeg network, standing in for it in ``model.inference``.

    Takes normalised tiles (N, 3, h, w) on the CPU, any N, h and w (multiples of ``encoder.stride``),
    and returns their fused logits (N, C, h, w), one channel per lesion, as float32; it has no side outputs. It keeps the
    network's ``config``, ``encoder.stride`` and ``normalize``, and one CPU-resident empty parameter
    so that ``next(model.parameters()).device`` answers as it does for the torch network.
    """

    def __init__(self, config: RedSegConfig, stride: int, compiled, backend: str, ir: Path):
        super().__init__()
        self.config = config
        self.encoder = _Stride(stride)
        self.backend = backend
        self.ir = ir
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    normalize = RedSeg.normalize

    def forward(self, x: torch.Tensor) -> RedSegOutput:
        tiles = np.ascontiguousarray(x.detach().float().cpu().numpy())
        with self._lock:  # one request: a worker thread runs one batch at a time anyway
            logits = self._request.infer({0: tiles})[0]
        return RedSegOutput(torch.from_numpy(np.array(logits, dtype=np.float32, copy=True)), {})


class _Stride(nn.Module):
    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride


def compile_ir(ir: Path, hint: str = "f32", threads: int | None = None):
    """The IR compiled for this CPU, its floating-point layers in ``hint`` (f32 or bf16), on ``threads``
    (default: torch's)."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": hint}
    return ov.Core().compile_model(ov.Core().read_model(ir), "CPU", config)


def precision_hint(backend: str) -> str:
    """``backend``'s floating-point precision on this CPU: bf16 where it computes it natively, else f32."""
    return PRECISION_HINT[backend] if cpu_has_native_bf16() else "f32"


def openvino_model(checkpoint_path: str | Path, checkpoint: Checkpoint, backend: str) -> OpenVINORedSeg:
    """``checkpoint``'s network on ``backend`` (an OpenVINO one), its IR made first if it has none yet."""
    from model.openvino_export import ensure_ir

    started = time.perf_counter()
    ir = ensure_ir(checkpoint_path, IR_KIND[backend])
    compiled = compile_ir(ir, precision_hint(backend))
    log.info("%s: %s compiled in %.1f s", backend, ir, time.perf_counter() - started)
    return OpenVINORedSeg(checkpoint.config, checkpoint.model.encoder.stride, compiled, backend, ir)


def load_for_inference(path: str | Path, device: torch.device | str = "cpu", backend: str = "auto") -> Checkpoint:
    """``load_checkpoint`` for inference on ``backend`` (resolved for ``device``): the torch network, or an
    ``OpenVINORedSeg`` in its place (the torch weights are then let go)."""
    backend = resolve_backend(backend, device)
    checkpoint = load_checkpoint(path, device)
    if backend == "torch":
        return checkpoint
    return dataclasses.replace(checkpoint, model=openvino_model(path, checkpoint, backend))


def backend_of(model: nn.Module) -> str:
    """The engine a loaded network runs on: ``torch`` or the OpenVINO backend's name."""
    return model.backend if isinstance(model, OpenVINORedSeg) else "torch"
