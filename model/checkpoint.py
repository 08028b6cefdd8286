"""Checkpoints: one safetensors file holding the weights and a JSON metadata block.

safetensors cannot execute code on load, and a checkpoint alone rebuilds its network
because the ``RedSegConfig`` is stored with the weights.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from model.atomic import atomic_write
from model.calibration import Calibration
from model.config import RedSegConfig
from model.network import RedSeg, fold_batch_norm
from model.precision import to_channels_last

FORMAT = "redseg-checkpoint"
FORMAT_VERSION = 1
METADATA_KEY = "redseg"
REFERRAL_KEY = "referral"
"""Metadata entry holding the fitted referral score; optional, so older checkpoints still load."""
LEGACY_REFERRAL_KEY = "screening"
"""Where checkpoints made before 2026-12-02 (the bundled ones among them) hold it; still read."""
MACULAR_OEDEMA_KEY = "macular_oedema"
"""Metadata entry holding the fitted macular-oedema risk score (models that segment hard exudates); optional."""
CALIBRATION_KEY = "calibration"
"""Metadata entry holding the probability calibration; optional, likewise."""

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "redseg-default.safetensors"
"""The bundled model, loaded when no other checkpoint is named: Red-Seg at full width (about 2.5 s a
photograph end to end on two CPU cores, about 0.1 s on a GPU)."""
FAST_CHECKPOINT = DEFAULT_CHECKPOINT.with_name("redseg-fast.safetensors")
"""The bundled quarter-width model: less accurate, about 2.5 times faster on a CPU; for slow hosts."""


class CheckpointError(ValueError):
    """The file is missing, corrupt, truncated, not a RedSeg checkpoint, or of an unknown version."""


@dataclass
class Checkpoint:
    model: RedSeg
    thresholds: dict[str, float]
    """Per-lesion operating threshold on the probability."""
    name: str = "redseg"
    version: str = "0"
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    sha256: str = ""
    referral: dict | None = None
    """The fitted referral score (``model.screening.referral.ReferralScore.to_dict``), absent in older checkpoints."""
    macular_oedema: dict | None = None
    """The fitted risk-of-macular-oedema score (the same kind as ``referral``), absent without hard exudates or in older checkpoints."""
    calibration: Calibration | None = None
    """Maps the network's scores to calibrated probabilities (``redseg-calibrate``); None: raw scores."""

    @property
    def raw_thresholds(self) -> dict[str, float]:
        """The operating thresholds on the network's raw scores (``thresholds`` are on calibrated ones)."""
        return self.calibration.raw_thresholds if self.calibration is not None else self.thresholds

    @property
    def config(self) -> RedSegConfig:
        return self.model.config


def save_checkpoint(
    path: str | Path,
    model: RedSeg,
    *,
    thresholds: dict[str, float] | None = None,
    name: str = "redseg",
    version: str = "0",
    provenance: dict | None = None,
    metrics: dict | None = None,
    referral: dict | None = None,
    macular_oedema: dict | None = None,
    half: bool = False,
    calibration: Calibration | None = None,
) -> Path:
    """Write ``model`` and its metadata atomically (temporary file, then rename)."""
    thresholds = {lesion: 0.5 for lesion in model.config.lesions} | dict(thresholds or {})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": version,
        "config": model.config.to_dict(),
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "provenance": provenance or {},
        "metrics": metrics or {},
    }
    if referral is not None:
        meta[REFERRAL_KEY] = referral
    if macular_oedema is not None:
        meta[MACULAR_OEDEMA_KEY] = macular_oedema
    if calibration is not None:
        meta[CALIBRATION_KEY] = calibration.to_dict()
    dtype = torch.float16 if half else torch.float32
    tensors = {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in model.state_dict().items()
    }
    _write_checkpoint(Path(path), tensors, meta)
    return Path(path)


def _write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Atomically (a rewritten file keeps its permissions: ``model.atomic.atomic_write``)."""
    with atomic_write(path) as tmp:
        save_file(tensors, tmp, metadata={METADATA_KEY: json.dumps(meta)})


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def write_referral(path: str | Path, referral: dict, macular_oedema: dict | None = None) -> None:
    """Store a fitted referral score, and the macular-oedema risk score fitted with it (None: drop a stored
    one), in an existing checkpoint's metadata (weights untouched)."""
    scores = {REFERRAL_KEY: referral} | ({MACULAR_OEDEMA_KEY: macular_oedema} if macular_oedema is not None else {})
    drop = (LEGACY_REFERRAL_KEY,) + (() if macular_oedema is not None else (MACULAR_OEDEMA_KEY,))
    update_metadata(path, drop=drop, **scores)


def model_digest(path: str | Path) -> str:
    """SHA-256 of what decides the network's outputs (weights, config, thresholds, calibration), not of the whole file.

    Unlike ``file_sha256`` it stays the same when only the referral or macular-oedema score is rewritten.
    """
    path = Path(path)
    meta = read_metadata(path)
    decisive = [meta["config"], meta["thresholds"]] + ([meta[CALIBRATION_KEY]] if CALIBRATION_KEY in meta else [])
    digest = hashlib.sha256(json.dumps(decisive, sort_keys=True).encode())
    for name, tensor in sorted(_read_tensors(path).items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def update_metadata(
    path: str | Path, out: str | Path | None = None, drop: tuple[str, ...] = (), half: bool = False, **changes
) -> Path:
    """Rewrite a checkpoint (to ``out``, default in place) with some metadata keys replaced or dropped;
    weights as stored, or with ``half`` their floating-point tensors in float16."""
    path = Path(path)
    meta = {k: v for k, v in read_metadata(path).items() if k not in drop} | changes
    tensors = _read_tensors(path)
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    target = Path(out) if out is not None else path
    _write_checkpoint(target, tensors, meta)
    return target


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's metadata block, checked, without loading the weights."""
    path = Path(path)
    if not path.is_file() and path == DEFAULT_CHECKPOINT:
        raise CheckpointError(f"the bundled model {path} is missing (not trained or not installed yet): name another checkpoint")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or truncated?): {exc}") from exc
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file but not a RedSeg checkpoint (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} has unreadable RedSeg metadata: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a RedSeg checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {meta.get('format_version')!r}; "
            f"this RedSeg reads version {FORMAT_VERSION}"
        )
    return meta


def load_checkpoint(
    path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu", fold: bool = True
) -> Checkpoint:
    """Rebuild the network from a checkpoint, in eval mode on ``device``, with float32 weights.

    With ``fold`` (for inference) its batch norm is folded into the convs (``fold_batch_norm``);
    ``fold=False`` keeps the layers as trained, to train on from them.
    """
    path = Path(path)
    meta = read_metadata(path)
    try:
        config = RedSegConfig.from_dict(meta["config"])
        model = RedSeg(config)
        state = _read_tensors(path)
        reference = model.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
        model.eval()
        if fold:
            fold_batch_norm(model)
        calibration = Calibration.from_dict(meta[CALIBRATION_KEY]) if CALIBRATION_KEY in meta else None
        if calibration is not None and calibration.lesions != config.lesions:
            raise ValueError(f"its calibration is for {calibration.lesions}, its network segments {config.lesions}")
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path} does not hold a valid RedSeg network: {exc}") from exc
    to_channels_last(model.to(device)).eval()
    return Checkpoint(
        model=model,
        thresholds={lesion: float(meta["thresholds"].get(lesion, 0.5)) for lesion in config.lesions},
        name=str(meta.get("name", "redseg")),
        version=str(meta.get("version", "0")),
        provenance=meta.get("provenance", {}),
        metrics=meta.get("metrics", {}),
        sha256=file_sha256(path),
        referral=meta.get(REFERRAL_KEY, meta.get(LEGACY_REFERRAL_KEY)),
        macular_oedema=meta.get(MACULAR_OEDEMA_KEY),
        calibration=calibration,
    )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
