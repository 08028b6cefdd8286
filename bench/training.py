"""Training-iteration benchmark: one full iteration of redseg-train against a bare forward+backward+step.

    .venv/bin/python bench/training.py [--config configs/cpu-default.yaml] [--stage 0] [--repeats 5]
                                       [--device auto|cpu|cuda] [--threads N]

(a) full: what ``redseg-train`` does per iteration: draw the batch (patch sampling and augmentation
    from the working-scale cache, through the DataLoader), ``train_step`` (normalise, forward, the
    stage's deep-supervised loss, backward, optimiser step), the scheduler step, a JSONL log line and
    the tqdm update;
(b) bare: forward, the same loss, backward and optimiser step on a batch already in memory;
(c) for reference, forward + backward of a trivial loss (sum of the fused logits) + step.
Interleaved, medians reported; the target is (a)/(b) <= 1.15: data and logging are not the bottleneck.
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
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.cache import WorkingScaleCache  # noqa: E402
from training.config import load_config  # noqa: E402
from training.dataset import AugmentConfig, IterationBatchSampler, PatchDataset  # noqa: E402
from training.engine import build_model, build_optimizer, build_scheduler, train_step  # noqa: E402
from training.idrid import DEFAULT_ROOT, list_samples, split_holdout  # noqa: E402
from training.losses import DeepSupervision, build_loss  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    stage = config["stages"][args.stage]
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    data = config["data"]
    root = Path(data["root"]) if data["root"] else DEFAULT_ROOT
    train_samples, _ = split_holdout(list_samples(root, data["split"]), data["holdout"])
    cache = WorkingScaleCache(config["model"]["working_long_side"], ROOT / data["cache_dir"])
    items = cache.get_all(train_samples[: args.images])

    torch.manual_seed(0)
    model = build_model(config["model"], None).to(device)
    iterations = args.repeats * 2 + 2
    criterion = DeepSupervision(build_loss(stage["loss"], stage["loss_options"], stage["iterations"]),
                                **config["deep_supervision"])
    optimizer = build_optimizer(model, stage["optimizer"])
    scheduler = build_scheduler(optimizer, stage["iterations"], stage["schedule"])
    dataset = PatchDataset(items, stage["crop_size"], data["lesion_share"], AugmentConfig.from_dict(config["augment"]))
    loader = iter(DataLoader(dataset, batch_sampler=IterationBatchSampler(0, iterations, stage["batch_size"]),
                             num_workers=int(data["workers"]), pin_memory=device.type == "cuda"))
    log = io.StringIO()
    bar = tqdm(total=iterations, file=io.StringIO())
    fixed_images, fixed_masks = next(iter(DataLoader(dataset, batch_sampler=IterationBatchSampler(10**6, 10**6 + 1, stage["batch_size"]))))
    fixed_images, fixed_masks = fixed_images.to(device), fixed_masks.to(device)

    def full(step: int) -> float:
        sync(device)
        tick = time.perf_counter()
        images, masks = next(loader)
        loss, parts = train_step(model, criterion, optimizer, images, masks, step, device, config["amp"])
        scheduler.step()
        log.write(json.dumps({"event": "train", "step": step, "loss": loss, "lr": scheduler.get_last_lr()[0],
                              "parts": parts}) + "\n")
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        sync(device)
        return time.perf_counter() - tick

    def bare(step: int) -> float:
        sync(device)
        tick = time.perf_counter()
        output = model(model.normalize(fixed_images))
        loss, _ = criterion(output, fixed_masks, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        return time.perf_counter() - tick

    def trivial(step: int) -> float:
        sync(device)
        tick = time.perf_counter()
        output = model(model.normalize(fixed_images))
        optimizer.zero_grad(set_to_none=True)
        output.fused.float().mean().backward()
        optimizer.step()
        sync(device)
        return time.perf_counter() - tick

    full(0), bare(0)  # warm-up
    times: dict[str, list[float]] = {"full": [], "bare": [], "trivial": []}
    for r in range(args.repeats):
        times["full"].append(full(r + 1))
        times["bare"].append(bare(r + 1))
        times["trivial"].append(trivial(r + 1))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"config {Path(args.config).name}, stage {stage['name']} ({stage['loss']}), batch {stage['batch_size']} x "
          f"{stage['crop_size']}^2, width {config['model']['width']}, device {device}, threads {torch.get_num_threads()}, "
          f"{args.repeats} repeats (median)")
    print(f"(a) full iteration (data + forward + loss + backward + step + logging): {med['full']:.3f} s")
    print(f"(b) bare forward + loss + backward + step on the same batch:           {med['bare']:.3f} s")
    print(f"(c) forward + backward of a trivial loss + step:                       {med['trivial']:.3f} s")
    print(f"ratio (a)/(b) = {med['full'] / med['bare']:.3f}  (target <= 1.15); loss share (b)/(c) = "
          f"{med['bare'] / med['trivial']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
