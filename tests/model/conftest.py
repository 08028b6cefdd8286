from pathlib import Path

import numpy as np
import pytest
import torch

from model import RedSeg, RedSegConfig

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGE = ROOT / "assets" / "IDRiD_05.jpg"
TINY = dict(width=0.0625, working_long_side=256)


def tiny_model(seed: int = 0, **overrides) -> RedSeg:
    torch.manual_seed(seed)
    return RedSeg(RedSegConfig(**(TINY | overrides))).eval()


@pytest.fixture
def model() -> RedSeg:
    return tiny_model()


def fundus_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A dark disc on black with texture and a few dark blobs: enough structure for shapes and seams."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    radius = 0.48 * min(height, width)
    inside = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < radius**2
    image = np.zeros((height, width, 3), np.uint8)
    image[inside] = (150, 60, 20)
    noise = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    image = np.where(inside[..., None], image + noise, 0).astype(np.uint8)
    for _ in range(8):
        y, x = rng.integers(0, height), rng.integers(0, width)
        image[max(0, y - 3) : y + 3, max(0, x - 3) : x + 3] //= 3
    return image
