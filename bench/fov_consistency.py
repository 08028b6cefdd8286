"""How much a crop, a padding, a resize or a one-pixel shift of a photograph changes its lesion maps.

For one IDRiD image, runs the model on the original and on each variant, maps the variant's maps
back onto the original's pixels, and prints the mean |p - p_original| per lesion (over the pixels
the variant shows) and each variant's AP there, once with long-side scaling and once with
fundus-disc scaling (``model.fov``), with the same weights.

    .venv/bin/python bench/fov_consistency.py [--checkpoint PATH] [--image IDRiD_05] [--data ../shared/data/idrid]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.fov import idrid_fov_diameter  # noqa: E402
from model.inference import predict_probabilities  # noqa: E402
from training.data.idrid import DEFAULT_ROOT, list_samples, load_sample  # noqa: E402
from training.evaluation.metrics import PRAccumulator  # noqa: E402


def variants(image: np.ndarray):
    """(name, photograph, its maps -> maps on the original's pixels, the original's pixels it shows)."""
    height, width = image.shape[:2]
    everywhere = np.s_[:, :]
    yield "original", image, lambda p: p, everywhere
    yield "shifted 1 px left", np.pad(image[:, 1:], ((0, 0), (0, 1), (0, 0))), lambda p: np.pad(p[:, :, :-1], ((0, 0), (0, 0), (1, 0))), np.s_[:, 1:]
    yield "cropped 300 top, 500 left", image[300:, 500:], lambda p: np.pad(p, ((0, 0), (300, 0), (500, 0))), np.s_[300:, 500:]
    yield ("cropped 200 top/bottom, 600 left/right", image[200:-200, 600:-600],
           lambda p: np.pad(p, ((0, 0), (200, 200), (600, 600))), np.s_[200:-200, 600:-600])
    yield "padded 250 black", np.pad(image, ((250, 250), (250, 250), (0, 0))), lambda p: p[:, 250:-250, 250:-250], everywhere
    for size in [(2144, 1424), (640, 426)]:
        yield (f"resized {size[0]}x{size[1]}", cv2.resize(image, size, interpolation=cv2.INTER_AREA),
               lambda p: np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in p]), everywhere)


def average_precision(probability: np.ndarray, mask: np.ndarray) -> float:
    accumulator = PRAccumulator()
    accumulator.update(probability, mask)
    return accumulator.average_precision()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--image", default="IDRiD_05")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    model = load_checkpoint(args.checkpoint).model
    sample = next(s for s in list_samples(args.data, "train") if s.name == args.image)
    image, masks = load_sample(sample)
    disc = model.config.fov_diameter or idrid_fov_diameter(model.config.working_long_side)
    for label, fov_diameter in [("long side", None), ("disc", disc)]:
        model.config = dataclasses.replace(model.config, fov_diameter=fov_diameter)
        reference = None
        for name, photograph, back, shown in variants(image):
            maps = back(predict_probabilities(model, np.ascontiguousarray(photograph)))
            reference = maps if reference is None else reference
            difference = [float(np.abs(maps[c][shown] - reference[c][shown]).mean()) for c in range(2)]
            aps = [average_precision(maps[c][shown], masks[c][shown]) for c in range(2)]
            print(f"{label:9} {name:40} mean|dp| MA {difference[0]:.4f} HE {difference[1]:.4f}   "
                  f"AP MA {aps[0]:.4f} HE {aps[1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
