"""Per-photograph screening features: lesions counted as regions, their areas, and the gradable field of view.

A lesion is a connected region (8-connectivity) of a lesion's mask. A microaneurysm is a *small
round* region: at most ``MA_MAX_DIAMETER`` of the field of view's diameter across (about 125 um
on a 50-degree photograph) and not elongated, so vessel fragments in the MA mask are not counted.
Every haemorrhage region counts. Areas are given in pixels and as a share of the field of view,
which does not depend on the photograph's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from model.config import ALL_LESIONS
from model.fov import Disc, fov_mask
from model.screening.macula import exudates_near_macula, find_macula
from model.screening.regions import region_stats

FEATURES_VERSION = 1
"""Bumped whenever a feature's definition changes (cached features of older versions are recomputed)."""

MA_MAX_DIAMETER = 0.009
"""Largest microaneurysm, as a share of the field of view's diameter (125 um of about 14 mm)."""
MA_MAX_ELONGATION = 3.0
"""Longer over shorter side of a microaneurysm's bounding box, at most."""
MA_MIN_FILL = 0.3
"""Region area over its bounding box's area, at least (a thin diagonal line fills little of its box)."""

LEVELS: dict[str, float | None] = {"op": None, "p50": 0.5, "p90": 0.9, "p99": 0.99}
"""Probability levels at which lesions are counted; ``op`` is the checkpoint's operating threshold."""

GRADABLE_SCALE = 512
"""Long side, in pixels, at which the gradable share of the field of view is measured."""
GRADABLE_WINDOW = 0.05
"""Side of the local brightness window, as a share of the field of view's diameter."""
DARK_LEVEL = 0.25
"""A pixel is too dark when its local green brightness is below this share of the field's 75th percentile."""
SATURATED_LEVEL = 250
"""A pixel is washed out when its local brightness (largest RGB channel, 0..255) reaches this."""


@dataclass(frozen=True)
class LesionCount:
    count: int
    area_pixels: int
    area_fraction_fov: float


@dataclass(frozen=True)
class FieldOfView:
    area_pixels: int
    fraction_of_image: float
    gradable_fraction: float
    """Share of the field of view that is neither too dark nor washed out (0 when there is no field)."""


def field_of_view(image: np.ndarray) -> FieldOfView:
    """The field of view's figures for an RGB uint8 photograph."""
    fov = fov_mask(image)
    area = int(np.count_nonzero(fov))
    return FieldOfView(area, area / fov.size, gradable_fraction(image))


def gradable_fraction(image: np.ndarray) -> float:
    """Share of the field of view whose local brightness is neither too dark nor saturated."""
    step = max(1, min(max(image.shape[:2]) // GRADABLE_SCALE, min(image.shape[:2])))  # a strip keeps a pixel across
    if step > 1:  # a whole-number factor first: OpenCV's fast box average, a third of the general one's cost
        image = cv2.resize(image, None, fx=1 / step, fy=1 / step, interpolation=cv2.INTER_AREA)
    height, width = image.shape[:2]
    scale = min(1.0, GRADABLE_SCALE / max(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    fov = fov_mask(small)
    fov_pixels = np.count_nonzero(fov)
    if not fov_pixels:
        return 0.0
    window = max(3, round(GRADABLE_WINDOW * diameter_of_area(fov_pixels)) | 1)
    weight = cv2.blur(fov.astype(np.float32), (window, window))
    green = cv2.blur(small[..., 1].astype(np.float32) * fov, (window, window)) / np.maximum(weight, 1e-6)
    brightest = cv2.blur(small.max(axis=2).astype(np.float32) * fov, (window, window)) / np.maximum(weight, 1e-6)
    dark = green < DARK_LEVEL * float(np.percentile(small[..., 1][fov], 75))
    washed_out = brightest >= SATURATED_LEVEL
    return np.count_nonzero(fov & ~dark & ~washed_out) / fov_pixels


def diameter_of_area(pixels: int) -> float:
    """Diameter of a disc of ``pixels`` area (the field of view's, for its diameter)."""
    return math.sqrt(4.0 * max(pixels, 1) / math.pi)


def count_lesions(mask: np.ndarray, lesion: str, fov_pixels: int) -> LesionCount:
    """Lesions of one kind in a boolean mask: connected regions, microaneurysms only when small and round."""
    return count_regions(region_stats(mask), lesion, fov_pixels)


def count_regions(stats: np.ndarray, lesion: str, fov_pixels: int) -> LesionCount:
    """``count_lesions`` of a mask whose ``region_stats`` are already made."""
    if lesion == "MA":
        stats = stats[_small_and_round(stats, diameter_of_area(fov_pixels))]
    area = int(stats[:, cv2.CC_STAT_AREA].sum())
    return LesionCount(len(stats), area, area / max(fov_pixels, 1))


def _small_and_round(stats: np.ndarray, diameter: float) -> np.ndarray:
    width = stats[:, cv2.CC_STAT_WIDTH].astype(np.float64)
    height = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float64)
    area = stats[:, cv2.CC_STAT_AREA]
    small = np.maximum(width, height) <= MA_MAX_DIAMETER * diameter
    round_ = (np.maximum(width, height) <= MA_MAX_ELONGATION * np.minimum(width, height)) & (
        area >= MA_MIN_FILL * width * height
    )
    return small & round_


def lesion_counts(
    probabilities: np.ndarray,
    thresholds: Mapping[str, float],
    fov_pixels: int,
    level: str = "op",
    lesions: Iterable[str] | None = None,
) -> dict[str, LesionCount]:
    """Per lesion (of ``lesions``; default: all), the lesions at one of ``LEVELS`` in probability maps (C, H, W),
    channels in ``thresholds`` order."""
    counts = {}
    for channel, lesion in enumerate(thresholds):
        if lesions is not None and lesion not in lesions:
            continue
        cut = thresholds[lesion] if LEVELS[level] is None else LEVELS[level]
        counts[lesion] = count_lesions(probabilities[channel] >= cut, lesion, fov_pixels)
    return counts


MACULA_FEATURES = ("EX_count_macula", "EX_area_macula")
"""Hard exudates at the operating threshold within one disc diameter of the fovea (``model.screening.macula``):
regions touching that zone, and the share of it they cover."""


def feature_lesion(name: str) -> str:
    """The lesion a feature reads: ``EX_count_op`` -> ``EX``."""
    return name.split("_")[0]


def feature_names(levels: Iterable[str] = LEVELS, lesions: Iterable[str] = ALL_LESIONS) -> list[str]:
    """Every feature ``image_features`` can give: ``<lesion>_<count|area>_<level>``, soft area, maximum, and
    with hard exudates the ``MACULA_FEATURES``."""
    lesions = list(lesions)
    names = [f"{lesion}_{kind}_{level}" for level in levels for lesion in lesions for kind in ("count", "area")]
    names += [f"{lesion}_{kind}" for lesion in lesions for kind in ("soft", "max")]
    return names + (list(MACULA_FEATURES) if "EX" in lesions else [])


def image_features(
    probabilities: np.ndarray,
    thresholds: Mapping[str, float],
    fov: FieldOfView,
    names: Iterable[str] | None = None,
    counted: Mapping[str, dict[str, LesionCount]] | None = None,
    image: np.ndarray | None = None,
    disc: Disc | None = None,
) -> dict[str, float]:
    """The named features (default: all) of one photograph for the referral score; areas are shares of the field of view.

    ``counted`` holds ``lesion_counts`` already made, by level, so they are not counted again. The
    ``MACULA_FEATURES`` need the photograph, ``image``, to find its macula (and its fundus ``disc``, found
    again unless given).
    """
    names = list(feature_names(lesions=thresholds) if names is None else names)
    unknown = sorted(set(names) - set(feature_names(lesions=thresholds)))
    if unknown:
        raise ValueError(f"unknown screening features {unknown} for a model segmenting {list(thresholds)}")
    features: dict[str, float] = {}
    counted = counted or {}
    for level in LEVELS:
        named = {feature_lesion(name) for name in names if name.endswith(f"_{level}")}
        if not named:
            continue
        at_level = counted.get(level) or lesion_counts(probabilities, thresholds, fov.area_pixels, level, named)
        for lesion, found in at_level.items():
            features[f"{lesion}_count_{level}"] = float(found.count)
            features[f"{lesion}_area_{level}"] = found.area_fraction_fov
    for channel, lesion in enumerate(thresholds):
        if f"{lesion}_soft" in names:
            features[f"{lesion}_soft"] = cv2.sumElems(probabilities[channel])[0] / max(fov.area_pixels, 1)
        if f"{lesion}_max" in names:
            features[f"{lesion}_max"] = float(probabilities[channel].max(initial=0.0))
    if set(MACULA_FEATURES) & set(names):
        features |= macula_features(probabilities, thresholds, image, disc)
    return {name: features[name] for name in names}


def macula_features(
    probabilities: np.ndarray, thresholds: Mapping[str, float], image: np.ndarray | None, disc: Disc | None = None
) -> dict[str, float]:
    """The ``MACULA_FEATURES`` of one photograph."""
    if image is None:
        raise ValueError("the macula features need the photograph, to find its macula")
    channel = list(thresholds).index("EX")
    count, share = exudates_near_macula(probabilities[channel] >= thresholds["EX"], find_macula(image, disc))
    return {"EX_count_macula": float(count), "EX_area_macula": share}
