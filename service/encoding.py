"""From probability maps to the response's per-lesion results: masks, statistics and PNGs."""

from __future__ import annotations

import base64
import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from model.config import LESIONS
from model.rendering import encode_png, lesion_stats, mask_from_levels, overlay, probability_to_uint16
from service.errors import ServiceError
from service.schemas import LesionResult

OUTPUTS = ("masks", "probabilities", "overlay")
DEFAULT_OUTPUTS = "masks,probabilities"

# PNG encoding of full-size maps dominates a request on a GPU; OpenCV releases the GIL,
# so the four maps of a request are encoded side by side.
_png_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="redseg-png")


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
    # The masks come from the 16-bit maps the response carries, so that the two agree exactly.
    levels = {lesion: probability_to_uint16(probabilities[c]) for c, lesion in enumerate(LESIONS)}
    masks = {lesion: mask_from_levels(levels[lesion], thresholds[lesion]) for lesion in LESIONS}
    pngs: dict = {}
    for lesion in LESIONS:
        if "masks" in outputs:
            pngs[lesion, "mask"] = _png_pool.submit(b64png, masks[lesion])
        if "probabilities" in outputs:
            pngs[lesion, "probability"] = _png_pool.submit(b64png, levels[lesion])
    if "overlay" in outputs:
        pngs["overlay"] = _png_pool.submit(lambda: b64png(overlay(image, masks)))
    results: dict[str, LesionResult] = {}
    for lesion in LESIONS:
        stats = lesion_stats(masks[lesion])
        results[lesion] = LesionResult(
            threshold=thresholds[lesion],
            area_pixels=stats.area_pixels,
            area_fraction=stats.area_fraction,
            components=stats.components,
            mask_png=_result(pngs.get((lesion, "mask"))),
            probability_png=_result(pngs.get((lesion, "probability"))),
        )
    return results, _result(pngs.get("overlay"))


def _result(future: Future | None) -> str | None:
    return None if future is None else future.result()
