"""The Red-Seg network, its checkpoints and tiled inference on fundus images."""

from model.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from model.config import LESIONS, RedSegConfig
from model.inference import TileSettings, predict_probabilities
from model.network import RedSeg, RedSegOutput

__all__ = [
    "LESIONS",
    "Checkpoint",
    "CheckpointError",
    "RedSeg",
    "RedSegConfig",
    "RedSegOutput",
    "TileSettings",
    "load_checkpoint",
    "predict_probabilities",
    "save_checkpoint",
]
