"""Overlays: the photograph with each lesion's mask tinted and outlined in its colour."""

from __future__ import annotations

import cv2
import numpy as np

LESION_COLOURS = {"MA": (255, 255, 0), "HE": (0, 255, 255), "EX": (0, 255, 0), "SE": (255, 0, 255)}
"""RGB colour of each lesion on overlays: MA yellow, HE cyan, EX green, SE magenta (each stands out
on a red fundus and from the others)."""

OVERLAY_ORDER = ("SE", "EX", "HE", "MA")
"""Overlays draw the larger lesions first and microaneurysms last, so MA wins where masks overlap:
a microaneurysm of a few pixels stays visible inside or beside a haemorrhage, whose larger extent
still shows around it. A lesion the model does not segment is skipped."""


def overlay(image: np.ndarray, masks: dict[str, np.ndarray], alpha: float = 0.45) -> np.ndarray:
    """The photo with each lesion's mask tinted and outlined in its colour (RGB uint8).

    Lesions are drawn in ``OVERLAY_ORDER``: where masks overlap, the pixel shows the later lesion's
    tint of the photo (MA's over HE's) and its outline lies on top.
    """
    result = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 1000))
    for lesion in OVERLAY_ORDER:
        if lesion not in masks:
            continue
        binary = (masks[lesion] > 0).astype(np.uint8)
        if not binary.any():
            continue
        colour = np.array(LESION_COLOURS[lesion], dtype=np.float32)
        region = binary.astype(bool)
        result[region] = (image[region] * (1 - alpha) + colour * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(result, contours, -1, LESION_COLOURS[lesion], thickness + 1)
    return result
