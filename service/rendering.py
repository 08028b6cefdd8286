"""From probability maps to the per-lesion results: masks, statistics and PNG files."""

from __future__ import annotations

import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from model.config import LESIONS
from model.formats.png import encode_png
from model.screening.masks import LesionMasks
from model.screening.overlay import overlay
from service.errors import ServiceError
from service.schemas import LesionResult

OUTPUTS = ("masks", "probabilities", "overlay")
DEFAULT_OUTPUTS = "masks,probabilities"

# PNG encoding of full-size maps dominates a request on a GPU; OpenCV releases the GIL,
# so the four maps of a request are encoded side by side.
_png_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="redseg-png")


def _any_case(word: str) -> str:
    return "".join(f"[{char.lower()}{char.upper()}]" for char in word)


def _comma_list(word_pattern: str) -> str:
    return rf"{word_pattern}(?:[\s,]*,[\s,]*{word_pattern})*"


_NAME = "(?:" + "|".join(_any_case(name) for name in OUTPUTS) + ")"
OUTPUTS_PATTERN = re.compile(rf"^[\s,]*(?:{_comma_list(_any_case('none'))}|{_comma_list(_NAME)})?[\s,]*$")
"""Exactly the values ``parse_outputs`` accepts (documented in the OpenAPI schema; no inline flags, for JSON Schema)."""


def parse_outputs(value: str) -> frozenset[str]:
    """``masks,probabilities,overlay`` in any combination and case; ``none`` (or empty) for statistics only."""
    names = {name.strip().lower() for name in value.split(",")} - {""}
    if not OUTPUTS_PATTERN.fullmatch(value):
        unknown = sorted(names - set(OUTPUTS)) or sorted(names)
        raise ServiceError(
            422, "invalid_parameters", f"unknown outputs {unknown}: use a comma-separated subset of {', '.join(OUTPUTS)}, or none"
        )
    return frozenset(names - {"none"})


FILE_NAMES = {"mask": "{lesion}_mask.png", "probability": "{lesion}_probability.png"}
OVERLAY_FILE = "overlay.png"


@dataclass(frozen=True)
class Rendered:
    lesions: dict[str, LesionResult]
    """Per-lesion threshold and statistics (the PNG fields are left to the answer's format)."""
    files: dict[str, bytes]
    """The PNGs asked for, by file name: MA_mask.png, MA_probability.png, ..., overlay.png."""


def render(image: np.ndarray, masks: LesionMasks, outputs: frozenset[str]) -> Rendered:
    """Statistics and the PNGs in ``outputs`` for the ``lesion_masks`` of one photograph."""
    pngs: dict[str, Future] = {}
    for lesion in LESIONS:
        if "masks" in outputs:
            pngs[FILE_NAMES["mask"].format(lesion=lesion)] = _png_pool.submit(encode_png, masks.masks[lesion])
        if "probabilities" in outputs:
            pngs[FILE_NAMES["probability"].format(lesion=lesion)] = _png_pool.submit(encode_png, masks.levels[lesion])
    if "overlay" in outputs:
        pngs[OVERLAY_FILE] = _png_pool.submit(lambda: encode_png(overlay(image, masks.masks)))
    lesions = {
        lesion: LesionResult(
            threshold=masks.thresholds[lesion],
            area_pixels=stats.area_pixels,
            area_fraction=stats.area_fraction,
            components=stats.components,
        )
        for lesion, stats in masks.stats().items()
    }
    return Rendered(lesions, {name: future.result() for name, future in pngs.items()})
