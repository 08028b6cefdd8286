"""Where the macula lies, and the hard exudates near it (what diabetic macular oedema grading looks at).

The fovea is taken as the darkest smooth spot near the field of view's centre: on the green
channel, blurred so that vessels and small lesions vanish, within ``FOVEA_SEARCH`` of the field's
radius around its centre (screening photographs are centred on the macula, or between it and
the optic disc). The macula is the circle one optic-disc diameter around it, the zone in which
IDRiD grades hard exudates as the highest risk of macular oedema (grade 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from model.fov import Disc, detect_disc
from model.screening.regions import occupied_boxes

FOVEA_SEARCH = 0.35
"""The fovea is searched within this share of the field's radius around its centre."""
DISC_DIAMETER = 0.13
"""One optic-disc diameter (about 1.8 mm), as a share of the field of view's diameter (about 14 mm at 50 degrees)."""
BLUR = 0.03
"""Gaussian blur (sigma) of the green channel, as a share of the field of view's diameter."""
SEARCH_LONG_SIDE = 512
"""The photograph is searched at this long side, in pixels."""


@dataclass(frozen=True)
class Macula:
    x: float
    y: float
    """The fovea, in the photograph's pixels."""
    radius: float
    """One optic-disc diameter, in the photograph's pixels."""

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean (H, W): the pixels within ``radius`` of the fovea."""
        mask = np.zeros(shape, dtype=np.uint8)
        cv2.circle(mask, (round(self.x), round(self.y)), max(round(self.radius), 1), 1, thickness=-1)
        return mask.astype(bool)


def find_macula(image: np.ndarray, disc: Disc | None = None) -> Macula:
    """The macula of an RGB uint8 photograph (its fundus disc found here unless given)."""
    disc = disc or detect_disc(image)
    step = max(1, math.ceil(max(image.shape[:2]) / SEARCH_LONG_SIDE))
    green = np.ascontiguousarray(image[::step, ::step, 1]).astype(np.float32)
    blurred = cv2.GaussianBlur(green, (0, 0), max(BLUR * disc.diameter / step, 1.0))
    ys, xs = np.ogrid[: green.shape[0], : green.shape[1]]
    search = (xs - disc.cx / step) ** 2 + (ys - disc.cy / step) ** 2 <= (FOVEA_SEARCH * disc.radius / step) ** 2
    if not search.any():
        return Macula(disc.cx, disc.cy, DISC_DIAMETER * disc.diameter)
    y, x = np.unravel_index(np.argmin(np.where(search, blurred, np.inf)), blurred.shape)
    return Macula(float(x * step), float(y * step), DISC_DIAMETER * disc.diameter)


def exudates_near_macula(mask: np.ndarray, macula: Macula) -> tuple[int, float]:
    """(regions touching the macula, share of the macula covered) of a hard-exudate mask at the photograph's size."""
    zone = macula.mask(mask.shape)
    touching = 0
    for box in occupied_boxes(mask):
        inside = mask[box] & zone[box]
        if inside.any():
            _, labels = cv2.connectedComponents(mask[box].view(np.uint8), connectivity=8)
            touching += len(np.unique(labels[inside]))
    return touching, np.count_nonzero(mask & zone) / max(np.count_nonzero(zone), 1)
