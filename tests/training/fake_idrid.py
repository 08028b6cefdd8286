"""A tiny IDRiD-layout folder for tests: small random fundus-like images with MA/HE masks as TIFF."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.data.idrid import IMAGES_DIR, LESION_DIRS, MASKS_DIR, SPLITS

REAL_IDRID = Path(__file__).resolve().parents[3] / "shared" / "data" / "idrid"


def make_fake_idrid(root: Path, names=("IDRiD_01", "IDRiD_02"), size=(96, 144), split="train",
                    with_he=("IDRiD_01",), seed=0, exudates: bool = False) -> Path:
    """Write ``names`` as JPEG images with MA (always) and HE (for ``with_he``) 1-channel TIFF masks; with
    ``exudates`` also a bright hard exudate (EX masks) on every image and a pale soft one on those in ``with_he``."""
    rng = np.random.default_rng(seed)
    height, width = size
    images = root / IMAGES_DIR / SPLITS[split]
    images.mkdir(parents=True, exist_ok=True)
    for name in names:
        yy, xx = np.mgrid[:height, :width]
        inside = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(size) * 0.48) ** 2
        bgr = np.zeros((height, width, 3), np.uint8)
        bgr[inside] = (20, 70, 160)
        ma = np.zeros((height, width), np.uint8)
        he = np.zeros((height, width), np.uint8)
        for _ in range(4):
            y, x = rng.integers(height // 3, 2 * height // 3), rng.integers(width // 3, 2 * width // 3)
            cv2.circle(ma, (int(x), int(y)), 1, 255, -1)
        cv2.circle(he, (width // 2 + 10, height // 2), 6, 255, -1)
        bgr[(ma > 0) | (he > 0)] = (10, 25, 90)
        ex, se = np.zeros_like(ma), np.zeros_like(ma)
        if exudates:
            cv2.circle(ex, (width // 3, height // 3), 5, 255, -1)
            cv2.circle(se, (2 * width // 3, 2 * height // 3), 7, 255, -1)
            bgr[ex > 0] = (60, 220, 240)
            if name in with_he:
                bgr[se > 0] = (200, 200, 210)
        cv2.imwrite(str(images / f"{name}.jpg"), bgr)
        masks = root / MASKS_DIR / SPLITS[split]
        for lesion, mask in (("MA", ma), ("HE", he), ("EX", ex), ("SE", se)):
            if (lesion in ("HE", "SE") and name not in with_he) or (lesion in ("EX", "SE") and not exudates):
                continue
            folder = masks / LESION_DIRS[lesion]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{name}_{lesion}.tif"), mask)
    return root
