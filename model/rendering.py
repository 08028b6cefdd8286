"""Turning probability maps into the outputs a person or a program uses: masks, PNGs, overlays, statistics."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.config import LESIONS

LESION_COLOURS = {"MA": (255, 255, 0), "HE": (0, 255, 255)}
"""RGB colour of each lesion on overlays: MA yellow, HE cyan (both stand out on a red fundus)."""


@dataclass(frozen=True)
class LesionStats:
    area_pixels: int
    area_fraction: float
    components: int


def binary_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """0/255 uint8 mask of the pixels whose probability reaches ``threshold``."""
    return np.where(probability >= threshold, np.uint8(255), np.uint8(0))


def probability_to_uint16(probability: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 as uint16 0..65535 (p * 65535, rounded), fit for a 16-bit PNG."""
    return np.rint(np.clip(probability, 0.0, 1.0) * 65535.0).astype(np.uint16)


def uint16_to_probability(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) / 65535.0


def encode_png(array: np.ndarray, compression: int = 1) -> bytes:
    """Lossless PNG bytes of a grey (H, W) uint8/uint16 array or an RGB (H, W, 3) uint8 array."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def lesion_stats(mask: np.ndarray) -> LesionStats:
    binary = (mask > 0).astype(np.uint8)
    area = int(binary.sum())
    components = cv2.connectedComponents(binary, connectivity=8)[0] - 1 if area else 0
    return LesionStats(area_pixels=area, area_fraction=area / binary.size, components=int(components))


def overlay(image: np.ndarray, masks: dict[str, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """The photo with each lesion's mask tinted and outlined in its colour (RGB uint8)."""
    result = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 1000))
    for lesion in LESIONS:
        if lesion not in masks:
            continue
        binary = (masks[lesion] > 0).astype(np.uint8)
        if not binary.any():
            continue
        colour = np.array(LESION_COLOURS[lesion], dtype=np.float32)
        region = binary.astype(bool)
        result[region] = (result[region] * (1 - alpha) + colour * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(result, contours, -1, LESION_COLOURS[lesion], thickness + 1)
    return result
