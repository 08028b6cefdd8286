"""Can the photograph be graded? Too dark, washed out, out of focus, or too little of the field usable:
screening programmes answer "ungradable, retake" instead of a referral decision, and so does RedSeg.

Measured on a copy whose long side is ``QUALITY_SCALE`` pixels, so the figures do not depend on the
camera's resolution. The limits sit below every one of IDRiD's 407 and DiaRetDB1's 28 training
photographs, with a margin (``python -m training.evaluation.gradability``; docs/gradability/).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.fov import fov_mask
from model.screening.features import gradable_fraction

QUALITY_SCALE = 512
"""Long side, in pixels, of the copy the measures are taken on."""
MIN_FIELD_SHARE = 0.05
"""A photograph whose field of view (``model.fov.fov_mask``) covers less of it is too dark to see."""
MIN_BRIGHTNESS = 40
"""Least median brightness (largest RGB channel, 0..255) of the field of view; real photographs: 57 and up."""
MAX_SATURATED_SHARE = 0.5
"""Most of the field of view that may be saturated (a channel at 250 or more); real photographs: 0.26 at most."""
MIN_FOCUS = 0.21
"""Least focus: in blocks of the field, mean |green - its Gaussian blur (sigma 1.5 px)| over the block's spread of
the blurred green, at the blocks' 90th percentile. Real photographs: 0.23 and up (IDRiD_081, hazy around a large
scar); copies 1072 px wide blurred by 2 px (8 at IDRiD's full size): 0.12-0.36; by 4 px: 0.19 at most."""
FOCUS_BLOCK = 32
MIN_SPREAD = 2.0
"""A block's spread (0..255) counts as at least this, so flat blocks do not divide by nearly nothing."""
MIN_USABLE_SHARE = 0.5
"""Least share of the field neither too dark nor washed out locally (``gradable_fraction``); real: 0.77 and up."""

REASONS = ("too dark", "washed out", "out of focus", "too little of the field usable")


@dataclass(frozen=True)
class ImageQuality:
    gradable: bool
    reasons: tuple[str, ...]
    """Why not gradable, from ``REASONS``; empty when gradable."""
    field_share: float
    brightness: float
    saturated_share: float
    focus: float
    usable_share: float


def assess_quality(image: np.ndarray, usable_share: float | None = None) -> ImageQuality:
    """The quality measures of an RGB uint8 photograph and whether it can be graded (``usable_share``:
    its ``gradable_fraction``, where computed already)."""
    small = _small_copy(image)
    field = fov_mask(small)
    value = small.max(axis=2)
    brightness = float(np.median(value[field])) if field.any() else 0.0
    saturated = float(np.count_nonzero(value[field] >= 250) / max(np.count_nonzero(field), 1))
    usable = float(gradable_fraction(image) if usable_share is None else usable_share)
    measures = dict(field_share=float(field.mean()), brightness=brightness, saturated_share=saturated,
                    focus=_focus(small, field), usable_share=usable)
    reasons = [reason for reason, failed in zip(REASONS, (
        measures["field_share"] < MIN_FIELD_SHARE or brightness < MIN_BRIGHTNESS,
        saturated > MAX_SATURATED_SHARE,
        measures["focus"] < MIN_FOCUS,
        usable < MIN_USABLE_SHARE,
    )) if failed]
    return ImageQuality(gradable=not reasons, reasons=tuple(reasons), **measures)


def _small_copy(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = QUALITY_SCALE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _focus(small: np.ndarray, field: np.ndarray) -> float:
    """Fine detail over local contrast in blocks of ``FOCUS_BLOCK`` pixels inside the field (away from its
    rim), at its 90th percentile: a blurred photograph is blurred everywhere, while a sharp one keeps its
    sharp vessels beside any smooth area (a large scar, a hazy patch). 0 where no block is inside."""
    inner = cv2.erode(field.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(np.float32)
    green = small[..., 1].astype(np.float32)
    smooth = cv2.GaussianBlur(green, (0, 0), 1.5)
    height, width = (green.shape[0] // FOCUS_BLOCK) * FOCUS_BLOCK, (green.shape[1] // FOCUS_BLOCK) * FOCUS_BLOCK
    if not height or not width:
        return 0.0

    def per_block(values: np.ndarray) -> np.ndarray:
        blocks = values[:height, :width].reshape(height // FOCUS_BLOCK, FOCUS_BLOCK, width // FOCUS_BLOCK, FOCUS_BLOCK)
        return blocks.mean(axis=(1, 3))

    inside = per_block(inner) > 0.9
    if not inside.any():
        return 0.0
    detail = per_block(np.abs(green - smooth))
    spread = np.sqrt(np.maximum(per_block(smooth * smooth) - per_block(smooth) ** 2, 0.0))
    return float(np.percentile(detail[inside] / np.maximum(spread[inside], MIN_SPREAD), 90))
