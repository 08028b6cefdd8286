"""A classical, non-learned red-lesion detector: the floor the trained network must beat.

Green channel -> field-of-view fill -> CLAHE -> background estimate (large median) ->
dark-object map -> line-opening top-hat that removes the elongated vessels but keeps round
lesions -> squashed to 0..1. A small structuring element scores microaneurysms, a larger
one haemorrhages.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from model.config import LESIONS, RedSegConfig
from model.fov import fov_mask, working_size


@dataclass(frozen=True)
class BaselineSettings:
    long_side: int = RedSegConfig.working_long_side
    """Scores are computed at this scale, then upsampled to the original resolution."""
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    background_size: int = 71
    """Median-filter size (pixels at the working scale) of the background estimate; odd."""
    line_length: dict[str, int] | None = None
    """Per lesion, the length of the line elements (odd): vessels longer than this survive the opening."""
    orientations: int = 12
    scale: dict[str, float] | None = None
    """Per lesion, the top-hat contrast (in background standard deviations) that maps to score 0.5."""
    fov_erosion: int = 15
    """The rim of the field of view (pixels at the working scale) is scored 0: it is bright-dark edge."""

    def lengths(self) -> dict[str, int]:
        return self.line_length or {"MA": 21, "HE": 45}

    def scales(self) -> dict[str, float]:
        return self.scale or {"MA": 1.5, "HE": 1.5}


def line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A one-pixel-wide line of ``length`` through the centre of a (length, length) kernel."""
    kernel = np.zeros((length, length), np.uint8)
    centre = (length - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)) * centre, np.sin(np.radians(angle_deg)) * centre
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1)
    return kernel


def line_tophat(darkness: np.ndarray, length: int, orientations: int) -> np.ndarray:
    """``darkness`` minus its supremum of openings by lines: what no long line fits in (round blobs)."""
    opened = np.zeros_like(darkness)
    for k in range(orientations):
        kernel = line_kernel(length, 180.0 * k / orientations)
        np.maximum(opened, cv2.morphologyEx(darkness, cv2.MORPH_OPEN, kernel), out=opened)
    return darkness - opened


def darkness_map(rgb: np.ndarray, settings: BaselineSettings) -> tuple[np.ndarray, np.ndarray]:
    """(how much darker than its background each pixel is, in background standard deviations; FOV mask)."""
    fov = fov_mask(rgb)
    green = rgb[..., 1]
    inside = green[fov]
    fill = int(np.median(inside)) if inside.size else 0
    green = np.where(fov, green, fill).astype(np.uint8)
    clahe = cv2.createCLAHE(clipLimit=settings.clahe_clip, tileGridSize=(settings.clahe_tiles,) * 2)
    green = clahe.apply(green)
    background = cv2.medianBlur(green, settings.background_size)
    darkness = background.astype(np.float32) - green.astype(np.float32)
    spread = float(np.std(darkness[fov])) if fov.any() else 1.0
    return np.maximum(darkness, 0) / max(spread, 1e-6), fov


def red_lesion_scores(rgb: np.ndarray, settings: BaselineSettings = BaselineSettings()) -> np.ndarray:
    """Per-lesion scores, float32 (2, H, W) in 0..1 (MA, HE), for an RGB uint8 image (H, W, 3)."""
    height, width = rgb.shape[:2]
    small_h, small_w = working_size(height, width, settings.long_side)
    small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA) if (small_h, small_w) != (height, width) else rgb
    darkness, fov = darkness_map(small, settings)
    erosion = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * settings.fov_erosion + 1,) * 2)
    inner = cv2.erode(fov.astype(np.uint8), erosion).astype(np.float32)
    scores = []
    for lesion in LESIONS:
        tophat = line_tophat(darkness, settings.lengths()[lesion], settings.orientations)
        scale = settings.scales()[lesion]
        scores.append(tophat / (tophat + scale) * inner)
    stacked = np.stack(scores, axis=-1).astype(np.float32)
    if (small_h, small_w) != (height, width):
        stacked = cv2.resize(stacked, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.clip(stacked, 0, 1).transpose(2, 0, 1))


def main(argv=None) -> int:
    from training.evaluation.evaluate import (add_data_arguments, data_header, describe_selection, evaluate_samples, format_summary,
                                   select_samples, write_report)
    from training.data.idrid import DatasetLayoutError

    parser = argparse.ArgumentParser(prog="redseg-baseline", description="Evaluate the classical (non-learned) red-lesion detector.")
    add_data_arguments(parser)
    parser.add_argument("--threshold", type=float, default=0.5, help="operating threshold of both lesion scores")
    args = parser.parse_args(argv)
    try:
        samples = select_samples(args)
    except (DatasetLayoutError, ValueError) as exc:
        print(f"redseg-baseline: error: {exc}", file=sys.stderr)
        return 2
    settings = BaselineSettings()
    thresholds = {lesion: args.threshold for lesion in LESIONS}
    evaluation = evaluate_samples(samples, lambda image: red_lesion_scores(image, settings), thresholds,
                                  progress=not args.no_progress)
    header = {
        "model": {
            "method": "classical baseline: green channel, CLAHE, median background, line-opening top-hat",
            "settings": {**asdict(settings), "line_length": settings.lengths(), "scale": settings.scales()},
            "thresholds": thresholds,
        },
        **data_header(args, samples),
        "fov_mask": True,
    }
    title = f"Classical baseline on {describe_selection(args, samples)}"
    report = write_report(args.out, evaluation, thresholds, header, title)
    print(format_summary(report))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
