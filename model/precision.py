"""The fast path: the network's numeric precision and memory layout on each device.

``auto`` runs the network under bf16 autocast, channels_last, wherever the hardware computes bf16
natively (CUDA, and CPUs with AVX512-BF16 or AMX); elsewhere it runs fp32, still channels_last.
Weights stay fp32 (autocast casts per operation), and losses and probabilities are computed in fp32.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 in hardware; without it bf16 is emulated and slower than fp32."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(NATIVE_BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    return False


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def uses_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether the network runs under bf16 autocast on ``device``: ``bf16`` forces it, ``fp32`` forbids it."""
    check_precision(precision)
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def autocast(device: torch.device, precision: str = "auto"):
    """The context the network's forward runs in: bf16 autocast on the fast path, else nothing."""
    if uses_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def to_channels_last(tensor_or_module: torch.Tensor | nn.Module):
    """channels_last (NHWC) layout: the fast one for convolutions on both CPU (oneDNN) and CUDA."""
    if isinstance(tensor_or_module, nn.Module):
        return tensor_or_module.to(memory_format=torch.channels_last)
    return tensor_or_module.contiguous(memory_format=torch.channels_last)
