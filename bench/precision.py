"""bf16 against fp32 on the hold-out: probability differences, hold-out AP and time, on one device.

    .venv/bin/python bench/precision.py [--device cpu|cuda] [--checkpoint PATH] [--pack .pack/idrid-working.npz]
                                        [--data ../shared/data/idrid] [--cache-dir .cache/idrid]

Each hold-out image (IDRiD_05, _10, ..., _50), already at the model's working scale (from the IDRiD
folder through the trainer's cache, or from a pack made by redseg-pack-data), runs through the tiled
forward twice, fp32 and bf16 (channels_last both), raw scores without the checkpoint's calibration.
Printed: the largest and the mean |bf16 - fp32| per lesion, the pooled hold-out AP of each, and
the seconds each took over all images (after one warm-up image).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from model.config import LESIONS  # noqa: E402
from model.devices import resolve_device  # noqa: E402
from model.inference import TileSettings, predict_working_scale  # noqa: E402
from training.data.cache import DEFAULT_CACHE_DIR, WorkingScaleCache  # noqa: E402
from training.data.idrid import DEFAULT_HOLDOUT, DEFAULT_ROOT, list_samples, split_holdout  # noqa: E402
from training.evaluation.metrics import PRAccumulator  # noqa: E402
from training.data.pack import read_pack  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def holdout_images(pack: str | None, model_config, root: Path = DEFAULT_ROOT,
                   cache_dir: Path = DEFAULT_CACHE_DIR) -> list:
    if pack:
        samples = read_pack(pack, model_config)
        return [s for s in samples if s.name in DEFAULT_HOLDOUT]
    _, held = split_holdout(list_samples(root))
    return WorkingScaleCache(model_config, cache_dir).get_all(held)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(model, samples: list, device: torch.device) -> dict:
    settings = {p: TileSettings(precision=p) for p in PRECISIONS}
    accumulators = {p: {lesion: PRAccumulator() for lesion in LESIONS} for p in PRECISIONS}
    seconds = dict.fromkeys(PRECISIONS, 0.0)
    largest, mean_sum = np.zeros(len(LESIONS)), np.zeros(len(LESIONS))
    for p in PRECISIONS:
        predict_working_scale(model, samples[0].image, settings[p])  # warm-up
    for sample in samples:
        maps = {}
        for p in PRECISIONS:
            synchronize(device)
            started = time.perf_counter()
            maps[p] = predict_working_scale(model, sample.image, settings[p]).float().cpu().numpy()
            seconds[p] += time.perf_counter() - started
            for channel, lesion in enumerate(LESIONS):
                accumulators[p][lesion].update(maps[p][channel], sample.masks[channel])
        difference = np.abs(maps["bf16"] - maps["fp32"]).reshape(len(LESIONS), -1)
        largest = np.maximum(largest, difference.max(axis=1))
        mean_sum += difference.mean(axis=1)
    return {"largest": largest, "mean": mean_sum / len(samples), "seconds": seconds,
            "ap": {p: [accumulators[p][lesion].average_precision() for lesion in LESIONS] for p in PRECISIONS}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--pack", help="hold-out images from this pack instead of the IDRiD folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="the IDRiD folder (without --pack)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="the trainer's working-scale cache")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    checkpoint = load_checkpoint(args.checkpoint, device)
    samples = holdout_images(args.pack, checkpoint.config, args.data, args.cache_dir)
    result = compare(checkpoint.model, samples, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{checkpoint.name} {checkpoint.version} on {device} ({name}); {len(samples)} hold-out images at the "
          f"working scale; raw scores")
    print("| lesion | largest abs(bf16 - fp32) | mean abs(bf16 - fp32) | AP fp32 | AP bf16 |")
    print("|---|---:|---:|---:|---:|")
    for channel, lesion in enumerate(LESIONS):
        print(f"| {lesion} | {result['largest'][channel]:.4f} | {result['mean'][channel]:.5f} | "
              f"{result['ap']['fp32'][channel]:.4f} | {result['ap']['bf16'][channel]:.4f} |")
    fp32, bf16 = result["seconds"]["fp32"], result["seconds"]["bf16"]
    print(f"tiled forward over the hold-out: fp32 {fp32:.3f} s, bf16 {bf16:.3f} s, bf16/fp32 = {bf16 / fp32:.3f}")


if __name__ == "__main__":
    main()
