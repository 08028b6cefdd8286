"""Training-iteration benchmark: the fast path (channels_last, bf16 autocast) against fp32 NCHW.

    .venv/bin/python bench/training.py [--config configs/cpu-default.yaml] [--stage 0] [--repeats 5]
                                       [--device auto|cpu|cuda] [--threads N]

(a) fast: one full ``redseg-train`` iteration on the fast path (``precision: auto``): draw the batch
    (patch sampling and augmentation from the working-scale cache, through the DataLoader),
    ``train_step`` (normalise, channels_last, forward under bf16 autocast where native, the stage's
    deep-supervised fp32 loss, backward, optimiser step on fp32 weights), the scheduler step, a JSONL
    log line and the tqdm update;
(r) reference: the same full iteration in fp32 with the NCHW layout (the trainer before the fast path);
(b) bare: the fast path's forward, loss, backward and optimiser step on a batch already in memory.
Interleaved, medians reported. Targets: (a)/(r) <= 0.35; (a)/(b) <= 1.15 (data and logging are not the
bottleneck).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.precision import autocast, to_channels_last, uses_bf16  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from model.devices import resolve_device  # noqa: E402
from training.config import StageConfig, TrainConfig, load_config  # noqa: E402
from training.data.dataset import PatchDataset  # noqa: E402
from training.engine import (build_criterion, build_loader, build_model, build_optimizer,  # noqa: E402
                             build_patch_dataset, build_scheduler, select_samples, stage_seed, to_working_scale,
                             train_step)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class TrainerIteration:
    """One model with its own optimiser, scheduler and loader, built and stepped the way ``redseg-train``
    builds and steps them (``training.engine``'s set-up functions)."""

    def __init__(self, config: TrainConfig, stage: StageConfig, dataset: PatchDataset, device: torch.device,
                 precision: str, channels_last: bool):
        torch.manual_seed(0)
        model = build_model(config.model, None).to(device)
        self.model = to_channels_last(model) if channels_last else model
        self.device, self.precision, self.channels_last = device, precision, channels_last
        self.criterion = build_criterion(stage, config.deep_supervision, config.model.lesions)
        self.optimizer = build_optimizer(self.model, stage.optimizer)
        self.scheduler = build_scheduler(self.optimizer, stage.iterations, stage.schedule)
        self.loader = iter(build_loader(dataset, stage, 0, config.data.workers, device))
        self.log = io.StringIO()
        self.bar = tqdm(total=stage.iterations, file=io.StringIO())

    def full(self, step: int) -> float:
        sync(self.device)
        tick = time.perf_counter()
        images, masks = next(self.loader)
        loss, parts = train_step(self.model, self.criterion, self.optimizer, images, masks, step, self.device,
                                 self.precision, self.channels_last)
        self.scheduler.step()
        self.log.write(json.dumps({"event": "train", "step": step, "loss": loss,
                                   "lr": self.scheduler.get_last_lr()[0], "parts": parts}) + "\n")
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        sync(self.device)
        return time.perf_counter() - tick

    def bare(self, step: int, images: torch.Tensor, masks: torch.Tensor) -> float:
        sync(self.device)
        tick = time.perf_counter()
        inputs = self.model.normalize(images)
        with autocast(self.device, self.precision):
            output = self.model(to_channels_last(inputs) if self.channels_last else inputs)
        loss, _ = self.criterion(output, masks, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        sync(self.device)
        return time.perf_counter() - tick


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--config", default=str(ROOT / "configs" / "cpu-default.yaml"))
    parser.add_argument("--stage", type=int, default=0, help="which stage's loss, batch and crop size")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=8, help="training images to sample from (cache load time)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    stage = config.stages[args.stage]
    # each model draws a warm-up batch and one per repeat from its own loader: a stage shorter than that is lengthened
    stage = replace(stage, iterations=max(stage.iterations, args.repeats + 1))
    device = resolve_device(args.device)
    train_samples, _ = select_samples(config.data, config.model)
    items = to_working_scale(train_samples[: args.images], config.data, config.model)

    dataset = build_patch_dataset(items, stage, config.data, config.augment, stage_seed(config.seed, args.stage))
    fixed = range(10**6, 10**6 + stage.batch_size)  # patches off the loaders' path, for (b)
    fixed_images, fixed_masks = default_collate([dataset[i] for i in fixed])
    fixed_images, fixed_masks = fixed_images.to(device), fixed_masks.to(device)
    fast = TrainerIteration(config, stage, dataset, device, config.precision, channels_last=True)
    reference = TrainerIteration(config, stage, dataset, device, "fp32", channels_last=False)

    fast.full(0), reference.full(0), fast.bare(0, fixed_images, fixed_masks)  # warm-up
    times: dict[str, list[float]] = {"fast": [], "reference": [], "bare": []}
    for r in range(args.repeats):
        times["fast"].append(fast.full(r + 1))
        times["reference"].append(reference.full(r + 1))
        times["bare"].append(fast.bare(r + 1, fixed_images, fixed_masks))
    med = {k: statistics.median(v) for k, v in times.items()}
    path = "bf16 autocast" if uses_bf16(device, config.precision) else "fp32"
    print(f"config {Path(args.config).name}, stage {stage.name} ({stage.loss}), batch {stage.batch_size} x "
          f"{stage.crop_size}^2, width {config.model.width}, device {device}, threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats (median, interleaved)")
    print(f"(a) full iteration, fast path ({path}, channels_last):  {med['fast']:.3f} s")
    print(f"(r) full iteration, fp32 NCHW (before the fast path):     {med['reference']:.3f} s")
    print(f"(b) bare forward + loss + backward + step, fast path:      {med['bare']:.3f} s")
    print(f"ratio (a)/(r) = {med['fast'] / med['reference']:.3f} (target <= 0.35); "
          f"(a)/(b) = {med['fast'] / med['bare']:.3f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
