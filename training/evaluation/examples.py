"""``redseg-examples``: ground truth beside prediction on a few images, for a person to look at (PNG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.cli_help import plain_help
from model.inference import TileSettings, predict_probabilities
from model.screening.masks import binary_mask
from model.screening.overlay import LESION_COLOURS, overlay
from training.data.idrid import DEFAULT_ROOT, DatasetLayoutError, list_samples, load_sample

ZOOM = 700
"""Side of the full-resolution close-up, in pixels of the original image."""


def densest_window(masks: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` square holding the most lesion pixels (MA counted 20 times)."""
    weight = masks[0].astype(np.float32) * 20 + masks[1].astype(np.float32)
    scale = 8
    small = cv2.resize(weight, (weight.shape[1] // scale, weight.shape[0] // scale), interpolation=cv2.INTER_AREA)
    box = max(1, size // scale)
    density = cv2.boxFilter(small, -1, (box, box), normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    density = density[: max(1, small.shape[0] - box + 1), : max(1, small.shape[1] - box + 1)]
    y, x = np.unravel_index(int(np.argmax(density)), density.shape)
    return int(y * scale), int(x * scale)


def example_figure(path: Path, name: str, image: np.ndarray, truth: np.ndarray, predicted: dict[str, np.ndarray]) -> Path:
    """Ground truth (C, H, W, channels in ``predicted``'s lesion order) beside the prediction, whole and close up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    truth_overlay = overlay(image, {lesion: truth[i] for i, lesion in enumerate(predicted)})
    predicted_overlay = overlay(image, predicted)
    y, x = densest_window(truth, ZOOM)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.5), dpi=110)
    for column, (title, picture) in enumerate((("ground truth", truth_overlay), ("RedSeg", predicted_overlay))):
        axes[0, column].imshow(cv2.resize(picture, (1200, round(1200 * picture.shape[0] / picture.shape[1])), interpolation=cv2.INTER_AREA))
        scale = 1200 / picture.shape[1]
        axes[0, column].add_patch(Rectangle((x * scale, y * scale), ZOOM * scale, ZOOM * scale, fill=False, ec="white", lw=1))
        axes[0, column].set_title(f"{name}: {title}")
        axes[1, column].imshow(picture[y : y + ZOOM, x : x + ZOOM])
        axes[1, column].set_title(f"{title}, full-resolution close-up")
    for ax in axes.ravel():
        ax.set_axis_off()
    handles = [Patch(color=np.array(LESION_COLOURS[lesion]) / 255, label=lesion) for lesion in predicted]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles))
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redseg-examples", description=plain_help(__doc__))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="default: the bundled model")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="IDRiD root folder (official layout)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", required=True, help="comma-separated image names, e.g. IDRiD_05,IDRiD_20")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)

    wanted = [name.strip() for name in args.images.split(",") if name.strip()]
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        samples = {sample.name: sample for sample in list_samples(args.data, args.split, checkpoint.config.lesions)}
    except (DatasetLayoutError, CheckpointError) as exc:
        print(f"redseg-examples: error: {exc}", file=sys.stderr)
        return 2
    missing = [name for name in wanted if name not in samples]
    if missing:
        print(f"redseg-examples: error: not in {args.data} ({args.split}): {', '.join(missing)}", file=sys.stderr)
        return 2
    for name in tqdm(wanted, desc="examples", unit="image", file=sys.stderr):
        image, truth = load_sample(samples[name])
        probabilities = predict_probabilities(checkpoint.model, image, TileSettings(), checkpoint.calibration)
        predicted = {lesion: binary_mask(probabilities[i], checkpoint.thresholds[lesion]) for i, lesion in enumerate(checkpoint.thresholds)}
        print(example_figure(args.out / f"{name}_example.png", name, image, truth, predicted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
