"""The steps of ``redseg-train-branches``: store the features, fit the branches, measure them, write the checkpoint."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import CheckpointError, load_checkpoint
from model.config import RED_LESIONS
from model.fov import fov_mask
from training.branches.features import build_store, pad_to_stride, store_key
from training.branches.fit import Branches, BranchFitConfig, fit_branches, working_scale_ap
from training.branches.merge import add_branches
from training.data.cache import WorkingScaleCache
from training.data.idrid import DatasetLayoutError, data_root, list_samples, split_holdout


class RunError(RuntimeError):
    """A checkpoint, data folder or setting the run cannot use; the message says which."""


def fov_masks(cache: WorkingScaleCache, samples: list, stride: int) -> list[np.ndarray]:
    """Each sample's field of view at the working scale, padded as its stored features are."""
    return [pad_to_stride(fov_mask(cache.get(sample).image), stride) for sample in samples]


def train_branches(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = dict(args.stages)
    lesions = RED_LESIONS + tuple(stages)
    try:
        checkpoint = load_checkpoint(args.checkpoint, fold=False)
        train, holdout = split_holdout(list_samples(data_root(args.data), "train", lesions), args.holdout)
    except (CheckpointError, DatasetLayoutError, ValueError) as exc:
        raise RunError(str(exc)) from exc
    taken = sorted(set(stages) & set(checkpoint.config.lesions))
    if taken:
        raise RunError(f"{args.checkpoint} already has branches for {taken}")
    tapped = tuple(sorted(set().union(*stages.values())))
    folder = args.store / store_key(checkpoint.sha256, lesions)
    cache = WorkingScaleCache(checkpoint.config)
    progress = not args.no_progress
    stored = build_store(checkpoint.model, train + holdout, cache, folder, tapped, progress)
    train_stored, holdout_stored = stored[: len(train)], stored[len(train) :]
    channels = [lesions.index(lesion) for lesion in stages]
    config = BranchFitConfig(args.bce_iterations, args.fnfp_iterations, batch_size=args.batch_size, seed=args.seed)
    branches = Branches(stages, checkpoint.config.stage_channels, args.hidden)
    log = fit_branches(branches, [s.in_memory() for s in train_stored], channels, config, progress)
    ap = working_scale_ap(branches, holdout_stored, channels, fov_masks(cache, holdout, checkpoint.model.encoder.stride))
    report = {"stages": stages, "hidden": args.hidden, "fit": asdict(config), "train": [s.name for s in train],
              "holdout": [s.name for s in holdout], "holdout_working_scale_ap": ap}
    add_branches(args.checkpoint, branches, args.write, report)
    if args.out is not None:
        write_run(args.out, log, report)
    return report


def write_run(out: Path, log: list[dict], report: dict) -> None:
    from training.branches.plots import plot_losses

    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in log))
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_losses(log, out / "curves.png")
