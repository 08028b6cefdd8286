"""From probability maps to the per-lesion results: masks, statistics and PNG files."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from model.config import ALL_LESIONS, LESION_NAMES
from model.formats.png import encode_png
from model.screening.masks import LesionMasks
from model.screening.overlay import overlay
from service.errors import ServiceError
from service.schemas import LesionResult

OUTPUTS = ("masks", "probabilities", "overlay")
DEFAULT_OUTPUTS = "masks,probabilities"

# PNG encoding of full-size maps dominates a request on a GPU; OpenCV releases the GIL,
# so the maps of a request are encoded side by side.
_png_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="redseg-png")


def _any_case(word: str) -> str:
    return "".join(f"[{char.lower()}{char.upper()}]" for char in word)


def _one_of(words: Sequence[str]) -> str:
    return "(?:" + "|".join(_any_case(word) for word in words) + ")"


def _comma_list(word_pattern: str) -> str:
    return rf"{word_pattern}(?:[\s,]*,[\s,]*{word_pattern})*"


@lru_cache
def outputs_pattern(lesions: tuple[str, ...]) -> str:
    """Exactly the ``outputs`` values ``parse_outputs`` accepts for a model segmenting ``lesions`` (any case; no
    inline flags, for the OpenAPI schema): image kinds or ``none``, and lesions, comma-separated."""
    none_list = _comma_list(_one_of(("none", *lesions)))
    kinds_list = _comma_list(_one_of((*OUTPUTS, *lesions)))
    return rf"^[\s,]*(?:{none_list}|{kinds_list})?[\s,]*$"


@dataclass(frozen=True)
class Outputs:
    """What a request asks for: the images (of ``OUTPUTS``) and the lesions answered."""

    images: frozenset[str]
    lesions: frozenset[str] | None = None
    """The lesions the answer holds; None: every lesion the model segments."""

    def answers(self, lesion: str) -> bool:
        return self.lesions is None or lesion in self.lesions

    def pick(self, per_lesion: dict) -> dict:
        """The entries of ``per_lesion`` for the lesions answered."""
        return {lesion: value for lesion, value in per_lesion.items() if self.answers(lesion)}


def lesion_not_served(parameter: str, lesion: str, served: Sequence[str]) -> ServiceError:
    """The 422 for a request naming a lesion the served model does not segment."""
    return ServiceError(
        422, "invalid_parameters", f"{parameter}: the served model does not segment {lesion} ({LESION_NAMES[lesion]}); "
        f"it segments {', '.join(served)}"
    )


def parse_outputs(value: str, served: Sequence[str] = ALL_LESIONS) -> Outputs:
    """``outputs``: any of ``masks,probabilities,overlay`` (or ``none``, or nothing, for statistics only) and any of
    the ``served`` lesions (none named: all of them), comma-separated, in any case and order."""
    names = {name.strip() for name in value.split(",")} - {""}
    if not re.fullmatch(outputs_pattern(tuple(served)), value):
        raise _outputs_error(names, served)
    lesions = frozenset(name.upper() for name in names) & set(served)
    return Outputs(frozenset(name.lower() for name in names) & set(OUTPUTS), lesions or None)


def _outputs_error(names: set[str], served: Sequence[str]) -> ServiceError:
    unserved = sorted(name.upper() for name in names if name.upper() in set(ALL_LESIONS) - set(served))
    if unserved:
        return lesion_not_served("outputs", unserved[0], served)
    known = {*OUTPUTS, "none", *(lesion.lower() for lesion in served)}
    unknown = sorted(name for name in names if name.lower() not in known)
    problem = f"unknown outputs {unknown}" if unknown else "outputs: none cannot be combined with an image"
    return ServiceError(
        422, "invalid_parameters", f"{problem}: use a comma-separated subset of {', '.join(OUTPUTS)} (or none) "
        f"and of the lesions {', '.join(served)}"
    )


FILE_NAMES = {"mask": "{lesion}_mask.png", "probability": "{lesion}_probability.png"}
OVERLAY_FILE = "overlay.png"


@dataclass(frozen=True)
class Rendered:
    lesions: dict[str, LesionResult]
    """Threshold and statistics of every lesion masked, answered or not (the PNG fields: the answer's format's)."""
    files: dict[str, bytes]
    """The PNGs asked for, by file name: MA_mask.png, MA_probability.png, ..., overlay.png."""


def render(image: np.ndarray, masks: LesionMasks, outputs: Outputs) -> Rendered:
    """Statistics of every lesion of the ``lesion_masks`` of one photograph, and the PNGs ``outputs`` asks for."""
    pngs: dict[str, Future] = {}
    shown = outputs.pick(masks.masks)
    for lesion in shown:
        if "masks" in outputs.images:
            pngs[FILE_NAMES["mask"].format(lesion=lesion)] = _png_pool.submit(encode_png, masks.masks[lesion])
        if "probabilities" in outputs.images:
            pngs[FILE_NAMES["probability"].format(lesion=lesion)] = _png_pool.submit(encode_png, masks.levels[lesion])
    if "overlay" in outputs.images:
        pngs[OVERLAY_FILE] = _png_pool.submit(lambda: encode_png(overlay(image, shown)))
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
