"""The training engine: plain functions with explicit arguments (torchvision-reference style)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from model.atomic import atomic_write
from model.checkpoint import load_checkpoint
from model.config import RedSegConfig
from model.imagenet import load_imagenet_encoder
from model.inference import TileSettings, predict_working_scale
from model.network import RedSeg
from model.precision import autocast, to_channels_last
from training.config import (ConfigError, DataConfig, DeepSupervisionConfig, OptimizerConfig, ScheduleConfig,
                             StageConfig)
from training.data.cache import CachedSample, WorkingScaleCache
from training.data.dataset import AugmentConfig, IterationBatchSampler, PatchDataset
from training.data.idrid import data_root, list_samples, split_holdout
from training.data.pack import read_pack
from training.evaluation.metrics import PRAccumulator
from training.losses import DeepSupervision, build_loss


def build_model(model_config: RedSegConfig, init: str | None) -> RedSeg:
    """The network of ``model_config``: random, its encoder from ImageNet weights, or (a ``.safetensors``
    RedSeg checkpoint of the same config) every weight from that checkpoint, to fine-tune it."""
    model = RedSeg(model_config)
    if init in (None, "", "none"):
        return model
    if str(init).endswith(".safetensors"):
        source = load_checkpoint(init, fold=False).model
        if source.config != model.config:
            raise ValueError(f"init checkpoint {init} is a {source.config}, the config asks for a {model.config}")
        model.load_state_dict(source.state_dict())
    else:
        load_imagenet_encoder(model, None if init == "torchvision" else init)
    return model


def build_optimizer(model: nn.Module, options: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if options.name == "adam":
        return torch.optim.Adam(params, lr=options.lr, betas=options.betas, weight_decay=options.weight_decay)
    if options.name == "adamw":
        return torch.optim.AdamW(params, lr=options.lr, betas=options.betas, weight_decay=options.weight_decay)
    if options.name == "sgd":
        return torch.optim.SGD(params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay)
    raise ValueError(f"unknown optimizer {options.name!r}")


def lr_factor(step: int, iterations: int, options: ScheduleConfig) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of a stage: linear warm-up, then the schedule."""
    if options.warmup and step < options.warmup:
        return (step + 1) / options.warmup
    floor = options.min_lr_ratio
    span = max(1, iterations - options.warmup)
    progress = min(1.0, (step - options.warmup) / span)
    if options.name == "constant":
        return 1.0
    if options.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if options.name == "poly":
        return floor + (1 - floor) * (1 - progress) ** options.power
    if options.name == "step":
        return options.gamma ** sum(1 for m in options.milestones if step >= m)
    raise ValueError(f"unknown schedule {options.name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, iterations: int, options: ScheduleConfig):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, iterations, options))


def build_criterion(stage: StageConfig, supervision: DeepSupervisionConfig, lesions: tuple[str, ...]) -> DeepSupervision:
    """The stage's pixel loss on every side output and the fused one of each of the model's ``lesions``,
    weighted as ``supervision`` says."""
    return DeepSupervision(
        build_loss(stage.loss, stage.loss_options, stage.iterations),
        side_weights=supervision.side_weights,
        fused_weight=supervision.fused_weight,
        lesion_weights=supervision.lesion_weights,
        lesions=lesions,
    )


def stage_seed(seed: int, stage_index: int) -> int:
    """The patch dataset's seed of a stage: each stage draws its own crops."""
    return seed * 1000 + stage_index


def build_patch_dataset(items: list[CachedSample], stage: StageConfig, data: DataConfig, augment: AugmentConfig,
                        seed: int) -> PatchDataset:
    return PatchDataset(items, stage.crop_size, data.lesion_share, augment, seed=seed)


def build_loader(dataset: PatchDataset, stage: StageConfig, start: int, workers: int, device: torch.device,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """The stage's batches from its step ``start`` on (this rank's share): patch ``i`` is a pure function of
    (seed, i), so a resumed stage draws the batches it would have drawn."""
    sampler = IterationBatchSampler(start, stage.iterations, stage.batch_size, rank, world_size)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False)


def select_samples(data: DataConfig, model_config: RedSegConfig) -> tuple[list, list]:
    """The training and hold-out samples of the ``data`` section: working-scale samples from its pack, or
    IDRiD file samples (``to_working_scale`` reads them). Raises ``DatasetLayoutError``, ``PackError``, or
    ``ConfigError`` for names that are not in the data."""
    if data.packed:
        source = data.packed
        samples = read_pack(source, model_config)
    else:
        source = data_root(data.root)
        samples = list_samples(source, data.split, model_config.lesions)
    if data.images is not None:
        wanted = set(data.images)
        unknown = wanted - {s.name for s in samples}
        if unknown:
            raise ConfigError(f"data.images: names not in {source}: {sorted(unknown)}")
        samples = [s for s in samples if s.name in wanted]
    try:
        return split_holdout(samples, data.holdout)
    except ValueError as exc:
        raise ConfigError(f"data.holdout: {exc}") from None


def to_working_scale(samples: list, data: DataConfig, model_config: RedSegConfig,
                     progress: bool = False) -> list[CachedSample]:
    """``select_samples``' samples at the model's working scale, through the cache (a pack's already are)."""
    if data.packed:
        return samples
    return WorkingScaleCache(model_config, data.cache_dir).get_all(samples, progress=progress)


def unwrap(model: nn.Module) -> RedSeg:
    return model.module if hasattr(model, "module") else model


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    step: int,
    device: torch.device,
    precision: str = "auto",
    channels_last: bool = True,
    freeze_batch_norm: bool = False,
) -> tuple[float, dict[str, float]]:
    """One forward, backward and optimiser step on a batch; returns the loss and its parts.

    The forward runs under ``precision``'s autocast (bf16 on the fast path) on fp32 master weights;
    the losses cast the logits to fp32 before they are computed. With ``freeze_batch_norm`` the
    batch-norm layers normalise with their running statistics and leave them as they are (their
    scale and shift still learn), as when fine-tuning a trained network.
    """
    model.train()
    if freeze_batch_norm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    images = images.to(device, non_blocking=True)
    masks = masks.to(device, non_blocking=True)
    inputs = unwrap(model).normalize(images)
    if channels_last:
        inputs = to_channels_last(inputs)
    with autocast(device, precision):
        output = model(inputs)
    loss, parts = criterion(output, masks, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"the loss is {value} at step {step}")
    return value, parts


@torch.no_grad()
def validate(
    model: RedSeg,
    samples: list[CachedSample],
    device: torch.device,
    settings: TileSettings = TileSettings(fov_mask=True),
) -> dict:
    """Hold-out metrics at the working scale: per lesion of the model AP, IDRiD AUC_PR and P/R/F1 at the
    best-F1 threshold, and their means over the lesions.

    Each cached image runs through ``model.inference.predict_working_scale`` (what ``redseg-segment``
    runs before resizing back), and every pixel is pooled.
    """
    was_training = model.training
    model.eval()
    lesions = model.config.lesions
    accumulators = {lesion: PRAccumulator() for lesion in lesions}
    try:
        for sample in samples:
            probabilities = predict_working_scale(model, sample.image, settings).float().cpu().numpy()
            for channel, lesion in enumerate(lesions):
                accumulators[lesion].update(probabilities[channel], sample.masks[channel])
    finally:
        model.train(was_training)
    metrics: dict = {}
    for lesion, acc in accumulators.items():
        threshold = acc.best_f1_threshold()
        metrics[lesion] = acc.summary(threshold)
    aps = [metrics[lesion]["average_precision"] for lesion in lesions]
    aucs = [metrics[lesion]["auc_pr_idrid"] for lesion in lesions]
    metrics["mean_ap"] = float(np.nanmean(aps)) if not all(np.isnan(aps)) else 0.0
    metrics["mean_auc_pr"] = float(np.mean(aucs))
    return metrics


# --- training state (resume) -------------------------------------------------------------


def rng_state() -> dict:
    """Every RNG state, in types that ``torch.load(weights_only=True)`` reads back."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: str | Path, state: dict) -> None:
    """``torch.save`` through ``atomic_write``: a kill never leaves half a state."""
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)
