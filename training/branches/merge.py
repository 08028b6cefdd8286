"""A checkpoint with new branches added: every weight, threshold and calibration it had stays as it was."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from safetensors import safe_open

from model.calibration import Calibration, Platt
from model.checkpoint import load_checkpoint, save_checkpoint
from model.network import RedSeg
from training.branches.fit import Branches

PROVISIONAL_THRESHOLD = 0.5
"""A new lesion's operating threshold until ``redseg-calibrate --lesions`` fits its own."""


def stored_in_half(path: Path) -> bool:
    with safe_open(str(path), framework="pt") as f:
        return any(f.get_slice(key).get_dtype() == "F16" for key in f.keys())


def extended_calibration(calibration: Calibration | None, lesions: tuple[str, ...]) -> Calibration | None:
    """The checkpoint's calibration with an identity scaling and a provisional threshold for each new lesion."""
    if calibration is None:
        return None
    identity = {lesion: Platt(1.0, 0.0) for lesion in lesions}
    modes = {mode: dict(scalings) | identity for mode, scalings in calibration.modes.items()}
    raw = dict(calibration.raw_thresholds) | {lesion: PROVISIONAL_THRESHOLD for lesion in lesions}
    return Calibration(modes, raw, calibration.fitted_on)


def add_branches(source: Path, branches: Branches, out: Path, provenance: dict, version: str | None = None) -> Path:
    """Write ``source`` with ``branches`` added to ``out``; the network's other weights are copied bit for bit."""
    checkpoint = load_checkpoint(source, fold=False)
    new = tuple(branches.branches)
    taken = sorted(set(new) & set(checkpoint.config.lesions))
    if taken:
        raise ValueError(f"{source} already has branches for {taken}")
    stages = {f"{lesion.lower()}_stages": b.stages for lesion, b in branches.branches.items()}
    config = replace(checkpoint.config, exudate_hidden=branches.hidden, **stages)
    model = RedSeg(config)
    missing, unexpected = model.load_state_dict(checkpoint.model.state_dict(), strict=False)
    if unexpected or any(not key.startswith(tuple(f"branches.{lesion}." for lesion in new)) for key in missing):
        raise ValueError(f"the network's weights do not fit its new config: missing {missing}, unexpected {unexpected}")
    for lesion, branch in branches.branches.items():
        model.branches[lesion].load_state_dict(branch.state_dict())
    model.eval()
    return save_checkpoint(
        out, model,
        thresholds=dict(checkpoint.thresholds) | {lesion: PROVISIONAL_THRESHOLD for lesion in new},
        name=checkpoint.name,
        version=version or checkpoint.version,
        provenance=checkpoint.provenance | {"branches": provenance},
        metrics=checkpoint.metrics,
        referral=checkpoint.referral,
        half=stored_in_half(source),
        calibration=extended_calibration(checkpoint.calibration, new),
    )
