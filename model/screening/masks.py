"""Lesion masks from probability maps: the 16-bit levels a caller saves, the masks thresholded on them,
their regions and statistics."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from model.screening.features import region_stats


@dataclass(frozen=True)
class LesionStats:
    area_pixels: int
    area_fraction: float
    components: int


PROBABILITY_LEVELS = 65535
"""A probability p is saved as the 16-bit level rint(p * 65535) and read back as level / 65535."""

_LEVEL_VALUES = np.arange(PROBABILITY_LEVELS + 1) / PROBABILITY_LEVELS


def binary_mask(probability: np.ndarray, threshold: float) -> np.ndarray:
    """0/255 uint8 mask of the pixels whose probability, as saved in the 16-bit map, reaches ``threshold``.

    The mask is taken from the quantised map (``probability_to_uint16``), so thresholding the saved
    map, ``level / 65535 >= threshold``, gives exactly this mask.
    """
    return mask_from_levels(probability_to_uint16(probability), threshold)


def mask_from_levels(levels: np.ndarray, threshold: float) -> np.ndarray:
    """0/255 uint8 mask of the 16-bit levels (2-D) with ``level / 65535 >= threshold``."""
    return cv2.compare(levels, threshold_level(threshold), cv2.CMP_GE)


def threshold_level(threshold: float) -> int:
    """The least 16-bit level whose probability (level / 65535, in float64) reaches ``threshold``."""
    return int(np.searchsorted(_LEVEL_VALUES, threshold, side="left"))


def probability_to_uint16(probability: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 as uint16 0..65535 (p * 65535, rounded, saturated), fit for a 16-bit PNG."""
    values = np.ascontiguousarray(probability, np.float32)
    # One pass in OpenCV (scale, round, saturate) instead of numpy's clip, multiply, round and cast.
    return cv2.multiply(values.reshape(-1, 1), float(PROBABILITY_LEVELS), dtype=cv2.CV_16U).reshape(values.shape)


def uint16_to_probability(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) / float(PROBABILITY_LEVELS)


def lesion_stats(mask: np.ndarray, regions: np.ndarray | None = None) -> LesionStats:
    """Area and connected regions (8-connectivity) of a mask's non-zero pixels (``regions``: its
    ``region_stats``, where made already)."""
    area = cv2.countNonZero(mask)
    components = len(region_stats(mask) if regions is None else regions)
    return LesionStats(area_pixels=area, area_fraction=area / mask.size, components=components)


@dataclass(frozen=True)
class LesionMasks:
    """Per lesion, the 16-bit map a caller saves, the mask thresholded on it and the mask's regions."""

    thresholds: dict[str, float]
    levels: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    regions: dict[str, np.ndarray]
    """``model.screening.features.region_stats`` of each mask: the regions the statistics and the summary count."""

    def stats(self) -> dict[str, LesionStats]:
        return {lesion: lesion_stats(mask, self.regions[lesion]) for lesion, mask in self.masks.items()}


def lesion_masks(probabilities: np.ndarray, thresholds: dict[str, float]) -> LesionMasks:
    """The 16-bit maps, masks and regions of probability maps (C, H, W), one channel per lesion of ``thresholds`` in its order.

    The masks are taken from the 16-bit maps, so that thresholding a saved map gives the same mask.
    """
    if len(probabilities) != len(thresholds):
        raise ValueError(f"{len(probabilities)} probability maps for the {len(thresholds)} lesions {list(thresholds)}")
    levels = {lesion: probability_to_uint16(probabilities[c]) for c, lesion in enumerate(thresholds)}
    masks = {lesion: mask_from_levels(levels[lesion], thresholds[lesion]) for lesion in thresholds}
    return LesionMasks(dict(thresholds), levels, masks, {lesion: region_stats(mask) for lesion, mask in masks.items()})
