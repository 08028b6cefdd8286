"""From probability maps to the response's per-lesion results: masks, statistics and PNGs."""

from __future__ import annotations

import base64

import numpy as np

from model.config import LESIONS
from model.rendering import binary_mask, encode_png, lesion_stats, overlay, probability_to_uint16
from service.errors import ServiceError
from service.schemas import LesionResult

OUTPUTS = ("masks", "probabilities", "overlay")
DEFAULT_OUTPUTS = "masks,probabilities"


def parse_outputs(value: str) -> frozenset[str]:
    """``masks,probabilities,overlay`` in any combination; ``none`` (or empty) for statistics only."""
    names = {name.strip().lower() for name in value.split(",")} - {""}
    if names in (set(), {"none"}):
        return frozenset()
    unknown = sorted(names - set(OUTPUTS))
    if unknown:
        raise ServiceError(
            422, "invalid_parameters", f"unknown outputs {unknown}: use a comma-separated subset of {', '.join(OUTPUTS)}, or none"
        )
    return frozenset(names)


def b64png(array: np.ndarray) -> str:
    return base64.b64encode(encode_png(array)).decode("ascii")


def render(
    image: np.ndarray, probabilities: np.ndarray, thresholds: dict[str, float], outputs: frozenset[str]
) -> tuple[dict[str, LesionResult], str | None]:
    """Per-lesion results for ``probabilities`` (2, H, W), and the overlay PNG if asked for."""
    results: dict[str, LesionResult] = {}
    masks: dict[str, np.ndarray] = {}
    for channel, lesion in enumerate(LESIONS):
        mask = binary_mask(probabilities[channel], thresholds[lesion])
        stats = lesion_stats(mask)
        masks[lesion] = mask
        results[lesion] = LesionResult(
            threshold=thresholds[lesion],
            area_pixels=stats.area_pixels,
            area_fraction=stats.area_fraction,
            components=stats.components,
            mask_png=b64png(mask) if "masks" in outputs else None,
            probability_png=b64png(probability_to_uint16(probabilities[channel])) if "probabilities" in outputs else None,
        )
    overlay_png = b64png(overlay(image, masks)) if "overlay" in outputs else None
    return results, overlay_png
