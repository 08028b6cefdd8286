"""What the two batch-norm probes (``probe_adabn.py``, ``probe_site_bn.py``) share: the unfolded network of the
checkpoint ``redseg-evaluate`` is asked for, a photograph's working-scale input with its field of view, the
encoder's batch norms, the mean and variance of a batch norm's input over a mask, and IDRiD's reference."""

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import training.evaluation.evaluate as evaluate
from model.checkpoint import load_checkpoint
from model.fov import fov_mask, working_mapping
from training.data.idrid import DEFAULT_ROOT, list_samples, split_holdout


def unfolded_network() -> nn.Module:
    """The network of the checkpoint on this command line (``redseg-evaluate``'s ``--checkpoint``), batch norm kept."""
    checkpoint = evaluate.build_parser().parse_known_args(sys.argv[1:])[0].checkpoint
    return load_checkpoint(checkpoint, "cpu", fold=False).model


def working_input(model, image: np.ndarray, whole_image: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input for ``image`` at the working scale, and where to measure it (1, 1, h, w): its field
    of view, or (``whole_image``) everything, black corners included."""
    small = working_mapping(image, model.config).to_working(image)
    inside = np.ones(small.shape[:2], np.float32) if whole_image else fov_mask(small).astype(np.float32)
    return model.normalize(torch.from_numpy(small).permute(2, 0, 1)[None]), torch.from_numpy(inside)[None, None]


def norm_indices(model, layers: int) -> list[int]:
    """Where the encoder's first ``layers`` batch norms sit in ``model.encoder.features``."""
    return [i for i, layer in enumerate(model.encoder.features) if isinstance(layer, nn.BatchNorm2d)][:layers]


def masked_moments(features: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per channel, the mean and variance of ``features`` (1, C, h, w) where ``inside`` (resized to them) is 1,
    and the number of pixels they are over."""
    weight = F.interpolate(inside, size=features.shape[-2:], mode="nearest")
    total = weight.sum().clamp(min=1.0)
    mean = (features * weight).sum(dim=(0, 2, 3)) / total
    var = (((features - mean.view(1, -1, 1, 1)) ** 2) * weight).sum(dim=(0, 2, 3)) / total
    return mean, var, total


def idrid_training_paths() -> list[Path]:
    """The 44 IDRiD training photographs outside the hold-out: the reference the probes compare a camera with."""
    training, _ = split_holdout(list_samples(DEFAULT_ROOT, "train"))
    return [sample.image_path for sample in training]


def cached(path: Path, compute: Callable[[], list]) -> list:
    """``compute()``'s statistics, saved in ``path`` the first time and read from it after."""
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        torch.save(compute(), path)
    return torch.load(path)
