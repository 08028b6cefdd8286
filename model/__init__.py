"""The Red-Seg network, its checkpoints and tiled inference on fundus images.

The names below load on first use (PEP 562): importing a light submodule (``model.config``,
``model.cli``) does not load torch, so ``redseg-segment --help`` answers before it would.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "LESIONS": "model.config",
    "Checkpoint": "model.checkpoint",
    "CheckpointError": "model.checkpoint",
    "RedSeg": "model.network",
    "RedSegConfig": "model.config",
    "RedSegOutput": "model.network",
    "TileSettings": "model.inference",
    "load_checkpoint": "model.checkpoint",
    "predict_probabilities": "model.inference",
    "save_checkpoint": "model.checkpoint",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


if TYPE_CHECKING:
    from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
    from model.config import LESIONS, RedSegConfig
    from model.inference import TileSettings, predict_probabilities
    from model.network import RedSeg, RedSegOutput
