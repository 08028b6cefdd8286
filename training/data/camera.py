"""What another camera does to a photograph, drawn at random for a training patch.

A patch goes through the steps of a camera's pipeline, each switched on by its ``AugmentConfig``
field (0 is off) and applied to half the patches: optics (a lower resolution, then defocus blur),
the sensor (white balance and an illumination fall-off across the patch) and the file (JPEG at a
lower quality). Gamma, contrast and brightness follow in ``PatchDataset.photometric``. Every patch
draws the same count of values whatever is on, from its own generator, so switching a step on
leaves every other patch's crop and photometric draws as they were.
"""

from __future__ import annotations

import cv2
import numpy as np

APPLY_SHARE = 0.5
"""The share of patches each switched-on step is applied to."""


def camera_effects(rng: np.random.Generator, image: np.ndarray, augment) -> np.ndarray:
    """``image`` (uint8 RGB, h x w x 3) as another camera might have taken it; the same shape and type."""
    applied = rng.random(5) < APPLY_SHARE
    resolution, blur, vignetting, jpeg = rng.random(4)
    gains = rng.uniform(-1, 1, size=3)
    falloff_centre = rng.uniform(-1, 1, size=2)
    if augment.resolution > 0 and applied[0]:
        image = lower_resolution(image, 1 - augment.resolution * resolution)
    if augment.blur > 0 and applied[1]:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=max(0.3, augment.blur * blur))
    channel_gains = 1 + augment.white_balance * gains if augment.white_balance > 0 and applied[2] else np.ones(3)
    falloff = augment.vignetting * vignetting if augment.vignetting > 0 and applied[3] else 0.0
    if falloff or np.any(channel_gains != 1):
        image = sensor_response(image, channel_gains, falloff, falloff_centre)
    if augment.jpeg_quality < 100 and applied[4]:
        image = jpeg_round_trip(image, int(round(augment.jpeg_quality + (100 - augment.jpeg_quality) * jpeg)))
    return image


def lower_resolution(image: np.ndarray, factor: float) -> np.ndarray:
    """The image taken at ``factor`` (0..1] of its resolution and brought back to its size."""
    h, w = image.shape[:2]
    small = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(cv2.resize(image, small, interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)


def sensor_response(image: np.ndarray, channel_gains: np.ndarray, falloff: float,
                    centre: np.ndarray) -> np.ndarray:
    """Per-channel gains (white balance) times an illumination that falls by ``falloff`` at a patch
    diagonal's distance from ``centre`` (in half-patches from the middle), quadratically."""
    h, w = image.shape[:2]
    ys, xs = np.ogrid[:h, :w]
    cy, cx = (1 + centre[0]) * h / 2, (1 + centre[1]) * w / 2
    distance2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / float(h * h + w * w)
    illumination = (1.0 - falloff * np.minimum(distance2, 1.0)).astype(np.float32)
    scaled = image.astype(np.float32) * illumination[..., None] * channel_gains.astype(np.float32)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image saved as a JPEG at ``quality`` (4:2:0, as cameras save) and read back."""
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]
