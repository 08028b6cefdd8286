"""OpenVINO IRs of a checkpoint, made once and kept beside it, keyed by what decides their outputs.

``fp32``: the folded network converted as it is (``openvino-bf16`` runs it with bf16 inference
precision). ``int8``: the same network, stage 3's output channels first equalised
(``model.channel_equalisation``), quantised by NNCF's post-training quantisation, its activation
ranges calibrated on the crops of IDRiD training photographs in ``CALIBRATION_PACK``
(``training.data.calibration_pack``; never the hold-out). Both take any batch and tile size
(dynamic N, H and W) and return the fused logits (N, C, H, W), one channel per lesion.

An IR's name holds a key: the SHA-256 of the checkpoint's ``model_digest`` (weights, config,
thresholds, calibration), the recipe (``RECIPE``; for int8 also the ignored scope, the equalised
stages and the calibration pack's bytes). A checkpoint retrained, recalibrated or replaced gets a new
key, so a stale IR is never read; it is deleted when its successor is written. The IRs go to
``<checkpoint stem>.openvino/`` beside the checkpoint, or where that folder cannot be written (a read-only
image) to ``$XDG_CACHE_HOME/redseg/openvino/``. ``redseg-export`` makes them ahead of time; the service and
the commands make a missing one at first use (``model.backends``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.channel_equalisation import equalise_stage_output
from model.checkpoint import file_sha256, load_checkpoint, model_digest
from model.network import RedSeg

log = logging.getLogger("model.openvino_export")

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_PACK = ROOT / "assets" / "calibration-crops.npz"
"""Crops of IDRiD training photographs at the working scale (``training.data.calibration_pack``)."""
PACK_FORMAT = "redseg-calibration-crops-1"
KINDS = ("fp32", "int8")
RECIPE = "redseg-openvino-6"
"""Bumped whenever conversion or quantisation changes: every IR is then made again."""
IGNORED_PATTERNS: tuple[str, ...] = (r".*encoder\.features\.0/.*", r".*branches.*")
"""Kept in floating point by NNCF (bf16 where the CPU computes it natively): the first conv (3 channels in:
quantising the normalised photograph itself cost the fast model 0.005 of hold-out MA AP, keeping it gained that
back, docs/benchmarks.md) and the side-output and fusion 1x1 convs (and their upsampling) of every lesion, which
make the logits the thresholds cut."""
EQUALISED_STAGES: tuple[int, ...] = (3,)
"""Encoder stages whose output channels are equalised before quantisation (``model.channel_equalisation``):
quantised without it, stage 4's first conv costs the default model 0.013-0.015 of hold-out hard-exudate AP;
with it, none (``redseg-openvino-6``; recipe 5 kept that conv in floating point instead, docs/exudates.md)."""


def ir_key(checkpoint: Path, kind: str, pack: Path = CALIBRATION_PACK) -> str:
    """What an IR of ``checkpoint`` depends on, hashed: the model's digest, the recipe and (int8) the pack."""
    if kind not in KINDS:
        raise ValueError(f"IR kind must be one of {KINDS}, got {kind!r}")
    parts = [model_digest(checkpoint), kind, RECIPE]
    if kind == "int8":
        parts += [json.dumps(IGNORED_PATTERNS), json.dumps(EQUALISED_STAGES), file_sha256(pack)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def ir_folders(checkpoint: Path) -> list[Path]:
    """Where IRs of ``checkpoint`` are looked for, and written to the first that can be: beside it, then the user's cache."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "redseg" / "openvino"
    return [checkpoint.with_name(f"{checkpoint.stem}.openvino"), cache / checkpoint.stem]


def ir_path(folder: Path, kind: str, key: str) -> Path:
    return folder / f"{kind}-{key[:16]}.xml"


def find_ir(checkpoint: Path, kind: str, key: str) -> Path | None:
    for folder in ir_folders(checkpoint):
        path = ir_path(folder, kind, key)
        if path.is_file() and path.with_suffix(".bin").is_file():
            return path
    return None


def writable_folder(checkpoint: Path) -> Path:
    for folder in ir_folders(checkpoint):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder):
                return folder
        except OSError:
            continue
    raise OSError(f"no writable folder for the OpenVINO IRs of {checkpoint}: tried {ir_folders(checkpoint)}")


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One process at a time makes IRs in ``folder`` (the others wait, then find the IR made)."""
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_ir(checkpoint: str | Path, kind: str, pack: Path = CALIBRATION_PACK) -> Path:
    """The IR of ``kind`` for ``checkpoint``, made (and its stale predecessors deleted) if there is none for its key."""
    checkpoint = Path(checkpoint)
    key = ir_key(checkpoint, kind, pack)
    found = find_ir(checkpoint, kind, key)
    if found is not None:
        return found
    folder = writable_folder(checkpoint)
    with locked(folder):
        found = find_ir(checkpoint, kind, key)
        if found is not None:
            return found
        return export_ir(checkpoint, kind, key, folder, pack)


def export_ir(checkpoint: Path, kind: str, key: str, folder: Path, pack: Path = CALIBRATION_PACK) -> Path:
    """Convert (and for int8 quantise) ``checkpoint`` into ``folder``; the IR's .xml path."""
    import openvino as ov

    started = time.perf_counter()
    log.info("making the OpenVINO %s IR of %s (once per checkpoint)", kind, checkpoint)
    model = load_checkpoint(checkpoint, "cpu").model.to(memory_format=torch.contiguous_format)
    ov_model = convert(model) if kind == "fp32" else int8_model(model, pack)
    path = ir_path(folder, kind, key)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        ov.save_model(ov_model, Path(scratch) / "ir.xml", compress_to_fp16=False)
        os.replace(Path(scratch) / "ir.bin", path.with_suffix(".bin"))
        os.replace(Path(scratch) / "ir.xml", path)  # the .xml last: it is what find_ir looks for
    seconds = time.perf_counter() - started
    manifest = {"checkpoint": str(checkpoint), "kind": kind, "key": key, "recipe": RECIPE, "seconds": round(seconds, 1),
                "openvino": ov.__version__, "ignored_patterns": list(IGNORED_PATTERNS) if kind == "int8" else [],
                "equalised_stages": equalised_stages(model) if kind == "int8" else []}
    path.with_suffix(".json").write_text(json.dumps(manifest, indent=2) + "\n")
    remove_stale(folder, kind, path)
    log.info("wrote %s in %.1f s", path, seconds)
    return path


def remove_stale(folder: Path, kind: str, keep: Path) -> None:
    """Delete the IRs of ``kind`` in ``folder`` other than ``keep``: made for an earlier state of the checkpoint."""
    for old in folder.glob(f"{kind}-*.xml"):
        if old != keep:
            for suffix in (".xml", ".bin", ".json"):
                old.with_suffix(suffix).unlink(missing_ok=True)


class FusedLogits(nn.Module):
    """The network with one output, the fused logits: what an IR computes."""

    def __init__(self, model: RedSeg):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).fused


def convert(model: RedSeg):
    """The (folded, NCHW) network as an OpenVINO model taking (N, 3, H, W) float32 of any N, H and W."""
    import openvino as ov

    stride = model.encoder.stride
    example = torch.zeros(1, 3, 8 * stride, 8 * stride)
    with torch.no_grad():
        return ov.convert_model(FusedLogits(model).eval(), example_input=example,
                                input=[ov.PartialShape([-1, 3, -1, -1])])


def read_pack(pack: Path = CALIBRATION_PACK) -> list[np.ndarray]:
    """The calibration crops, RGB uint8."""
    import cv2

    if not pack.is_file():
        raise FileNotFoundError(f"the int8 calibration pack {pack} is missing (python -m training.data.calibration_pack)")
    with np.load(pack) as data:
        header = json.loads(bytes(data["header"]))
        if header.get("format") != PACK_FORMAT:
            raise ValueError(f"{pack} is not a calibration pack of format {PACK_FORMAT}")
        return [cv2.cvtColor(cv2.imdecode(data[name], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for name in header["names"]]


def calibration_inputs(model: RedSeg, pack: Path = CALIBRATION_PACK) -> list[np.ndarray]:
    """The pack's crops as the network's inputs: normalised, (1, 3, h, w) float32."""
    inputs = []
    for crop in read_pack(pack):
        tensor = torch.from_numpy(crop).permute(2, 0, 1)[None]
        inputs.append(model.normalize(tensor).contiguous().numpy())
    return inputs


def equalised_stages(model: RedSeg) -> list[int]:
    """``EQUALISED_STAGES`` this network has a stage after (a shallower encoder has nothing to equalise for)."""
    return [stage for stage in EQUALISED_STAGES if stage < len(model.encoder.tap_indices)]


def int8_model(model: RedSeg, pack: Path = CALIBRATION_PACK):
    """``model`` (folded, its stages equalised in place) converted and quantised, calibrated on ``pack``."""
    inputs = calibration_inputs(model, pack)
    for stage in equalised_stages(model):
        equalise_stage_output(model, inputs, stage)
    return quantize(convert(model), inputs)


def quantize(ov_model, inputs: list[np.ndarray]):
    """NNCF's post-training int8 quantisation, the output branches (``IGNORED_PATTERNS``) left in fp32."""
    import nncf

    return nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs),
                         target_device=nncf.TargetDevice.CPU,
                         ignored_scope=nncf.IgnoredScope(patterns=list(IGNORED_PATTERNS), validate=False))


def main(argv: list[str] | None = None) -> int:
    """``redseg-export --openvino int8|fp32|all [--checkpoint PATH ...] [--force]``: make the IRs ahead of time."""
    import argparse
    import sys

    from model.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT, CheckpointError
    from model.cli_help import plain_help

    parser = argparse.ArgumentParser(prog="redseg-export", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--openvino", choices=(*KINDS, "all"), default="int8", help="which IR (default int8)")
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=[DEFAULT_CHECKPOINT, FAST_CHECKPOINT],
                        metavar="PATH", help="default: both bundled models")
    parser.add_argument("--calibration", type=Path, default=CALIBRATION_PACK, metavar="PACK",
                        help="the int8 calibration crops (default: the shipped pack of IDRiD training crops)")
    parser.add_argument("--force", action="store_true", help="make the IR again even if one for the key exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kinds = KINDS if args.openvino == "all" else (args.openvino,)
    try:
        for checkpoint in args.checkpoint:
            for kind in kinds:
                if args.force:
                    key = ir_key(checkpoint, kind, args.calibration)
                    folder = writable_folder(checkpoint)
                    with locked(folder):
                        path = export_ir(checkpoint, kind, key, folder, args.calibration)
                else:
                    path = ensure_ir(checkpoint, kind, args.calibration)
                print(f"{checkpoint}: {kind} IR {path}")
    except (CheckpointError, ValueError, OSError) as exc:
        print(f"redseg-export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
