"""Training new side-output branches on stored encoder features (``training.branches.features``).

Each step takes a batch of crops, aligned to the deepest tapped stage's stride so that every
stage's crop covers exactly the same pixels, runs the branches on the stored features, and applies
the trainer's losses (``training.losses``) with deep supervision over every side output and the
fused one. Two phases, as the red lesions were trained: a class-balanced BCE (which converges from
the branches' random start), then the balanced FN+FP loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.network import RedSegOutput, SideOutputBranch, branch_outputs
from training.branches.features import StoredPhotograph
from training.evaluation.metrics import PRAccumulator
from training.losses import DeepSupervision, build_loss


@dataclass(frozen=True)
class BranchFitConfig:
    balanced_bce_iterations: int = 900
    fnfp_iterations: int = 300
    crop: int = 256
    batch_size: int = 16
    learning_rate: float = 1e-3
    lesion_share: float = 0.5
    """Share of the crops centred on a lesion pixel (of a lesion drawn at random among those trained)."""
    seed: int = 0


class Branches(nn.Module):
    """The new branches, by lesion, on a list of stage outputs (index stage - 1)."""

    def __init__(self, stages: dict[str, tuple[int, ...]], stage_channels: tuple[int, ...], hidden: int = 0):
        super().__init__()
        self.hidden = hidden
        self.branches = nn.ModuleDict({lesion: SideOutputBranch(s, stage_channels, hidden) for lesion, s in stages.items()})

    def forward(self, taps: list[torch.Tensor | None], size: tuple[int, int]) -> RedSegOutput:
        return branch_outputs(self.branches, taps, size)


def crop_origin(masks: np.ndarray, crop: int, align: int, centred: bool, rng: np.random.Generator) -> tuple[int, int]:
    """A crop's top-left corner, a multiple of ``align``; ``centred``: about a lesion pixel of ``masks`` (C, h, w)."""
    _, h, w = masks.shape
    if centred and masks.any():
        ys, xs = np.nonzero(masks.any(axis=0))
        pick = rng.integers(len(ys))
        y = ys[pick] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1)
        x = xs[pick] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1)
    else:
        y, x = rng.integers(0, max(h - crop, 0) + 1), rng.integers(0, max(w - crop, 0) + 1)
    y, x = (int(np.clip(v, 0, max(limit - crop, 0))) // align * align for v, limit in ((y, h), (x, w)))
    return y, x


def crop_batch(
    photographs: list[StoredPhotograph], channels: list[int], stages: tuple[int, ...], config: BranchFitConfig,
    rng: np.random.Generator,
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """Stage crops (index stage - 1, None for stages not tapped) and the target masks (B, len(channels), crop, crop)."""
    align = 2 ** (max(stages) - 1)
    taps: dict[int, list[np.ndarray]] = {stage: [] for stage in stages}
    targets = []
    for _ in range(config.batch_size):
        photo = photographs[rng.integers(len(photographs))]
        lesion_channel = channels[rng.integers(len(channels))]
        centred = rng.random() < config.lesion_share
        y, x = crop_origin(photo.masks[[lesion_channel]], config.crop, align, centred, rng)
        targets.append(photo.masks[channels, y : y + config.crop, x : x + config.crop])
        for stage in stages:
            f = 2 ** (stage - 1)
            taps[stage].append(photo.stages[stage][:, y // f : (y + config.crop) // f, x // f : (x + config.crop) // f])
    stage_list = [torch.from_numpy(np.stack(taps[s]).astype(np.float32)) if s in taps else None for s in range(1, 6)]
    return stage_list, torch.from_numpy(np.stack(targets).astype(np.float32))


def fit_branches(
    branches: Branches, photographs: list[StoredPhotograph], channels: list[int], config: BranchFitConfig,
    progress: bool = True,
) -> list[dict]:
    """Train ``branches`` in place (two phases); ``channels`` index the trained lesions in the stored masks. Returns the log."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    stages = tuple(sorted(set().union(*(b.stages for b in branches.branches.values()))))
    optimizer = torch.optim.Adam(branches.parameters(), lr=config.learning_rate)
    phases = [("balanced_bce", config.balanced_bce_iterations, {}), ("fnfp", config.fnfp_iterations, {"reduction": "balanced"})]
    log = []
    for name, iterations, options in phases:
        criterion = DeepSupervision(build_loss(name, dict(options), iterations), lesions=tuple(branches.branches))
        steps = range(iterations)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"branches {name}", unit="step")
        for step in steps:
            taps, target = crop_batch(photographs, channels, stages, config, rng)
            loss, _ = criterion(branches(taps, target.shape[-2:]), target, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            log.append({"phase": name, "step": step, "loss": float(loss.detach())})
    return log


@torch.no_grad()
def working_scale_ap(
    branches: Branches, photographs: list[StoredPhotograph], channels: list[int], valid: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Pooled-pixel AP per trained lesion on whole stored photographs at the working scale (a quick hold-out check)."""
    accumulators = {lesion: PRAccumulator() for lesion in branches.branches}
    stages = tuple(sorted(set().union(*(b.stages for b in branches.branches.values()))))
    for index, photo in enumerate(photographs):
        taps = [torch.from_numpy(np.asarray(photo.stages[s], dtype=np.float32))[None] if s in stages else None for s in range(1, 6)]
        probabilities = torch.sigmoid(branches(taps, photo.masks.shape[-2:]).fused)[0].numpy()
        for probability, lesion, channel in zip(probabilities, branches.branches, channels):
            accumulators[lesion].update(probability, photo.masks[channel], None if valid is None else valid[index])
    return {lesion: acc.average_precision() for lesion, acc in accumulators.items()}
