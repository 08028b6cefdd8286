"""The training engine: plain functions with explicit arguments (torchvision-reference style)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model.atomic import atomic_write
from model.checkpoint import load_checkpoint
from model.config import LESIONS, RedSegConfig
from model.imagenet import load_imagenet_encoder
from model.inference import TileSettings, predict_working_scale
from model.network import RedSeg
from model.precision import autocast, to_channels_last
from training.data.cache import CachedSample
from training.evaluation.metrics import PRAccumulator


def build_model(model_config: dict, init: str | None) -> RedSeg:
    """The network of ``model_config``: random, its encoder from ImageNet weights, or (a ``.safetensors``
    RedSeg checkpoint of the same config) every weight from that checkpoint, to fine-tune it."""
    model = RedSeg(RedSegConfig.from_dict(model_config))
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


def build_optimizer(model: nn.Module, options: dict) -> torch.optim.Optimizer:
    name, lr, wd = options["name"], float(options["lr"]), float(options.get("weight_decay", 0.0))
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(options.get("betas", (0.9, 0.999))), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=tuple(options.get("betas", (0.9, 0.999))), weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(options.get("momentum", 0.9)), weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r}")


def lr_factor(step: int, iterations: int, options: dict) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of a stage: linear warm-up, then the schedule."""
    warmup = int(options.get("warmup", 0))
    if warmup and step < warmup:
        return (step + 1) / warmup
    name = options["name"]
    floor = float(options.get("min_lr_ratio", 0.0))
    span = max(1, iterations - warmup)
    progress = min(1.0, (step - warmup) / span)
    if name == "constant":
        return 1.0
    if name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if name == "poly":
        return floor + (1 - floor) * (1 - progress) ** float(options.get("power", 0.9))
    if name == "step":
        drops = sum(1 for m in options.get("milestones", []) if step >= int(m))
        return float(options.get("gamma", 0.1)) ** drops
    raise ValueError(f"unknown schedule {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, iterations: int, options: dict):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, iterations, options))


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
    """Hold-out metrics at the working scale: per lesion AP, IDRiD AUC_PR and P/R/F1 at the best-F1 threshold.

    Each cached image runs through ``model.inference.predict_working_scale`` (what ``redseg-segment``
    runs before resizing back), and every pixel is pooled.
    """
    was_training = model.training
    model.eval()
    accumulators = {lesion: PRAccumulator() for lesion in LESIONS}
    try:
        for sample in samples:
            probabilities = predict_working_scale(model, sample.image, settings).float().cpu().numpy()
            for channel, lesion in enumerate(LESIONS):
                accumulators[lesion].update(probabilities[channel], sample.masks[channel])
    finally:
        model.train(was_training)
    metrics: dict = {}
    for lesion, acc in accumulators.items():
        threshold = acc.best_f1_threshold()
        metrics[lesion] = acc.summary(threshold)
    aps = [metrics[lesion]["average_precision"] for lesion in LESIONS]
    aucs = [metrics[lesion]["auc_pr_idrid"] for lesion in LESIONS]
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
