"""Generated photographs for property-based tests: any size and shape, fundus-like or not."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


def cut_disc(height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """A bright textured disc on black, cut by the frame wherever it reaches beyond it."""
    yy, xx = np.mgrid[:height, :width]
    inside = np.hypot(xx - cx, yy - cy) <= radius
    texture = (60 * (1 + np.sin(xx / 5.0) * np.cos(yy / 7.0))).astype(np.uint8)
    image = np.zeros((height, width, 3), np.uint8)
    image[inside] = np.stack([120 + texture, texture, np.full_like(texture, 10)], -1)[inside]
    return image


@st.composite
def any_image(draw: st.DrawFn, max_side: int = 3000) -> np.ndarray:
    """Uniform, noise, a bright disc (tiny or large, whole or cut by the frame) on black, or a tiny disc in a
    large dark frame; from 1x1 to ``max_side`` pixels a side, at any aspect ratio."""
    height, width = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["uniform", "noise", "disc", "tiny disc in a dark frame"]))
    if kind == "uniform":
        return np.full((height, width, 3), draw(st.integers(0, 255)), np.uint8)
    if kind == "noise":
        return np.random.default_rng(draw(st.integers(0, 99))).integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == "tiny disc in a dark frame":
        radius = draw(st.floats(1, 40))
        return cut_disc(height, width, width / 2, height / 2, radius)
    radius = draw(st.floats(2, 2 * max(height, width)))
    cx, cy = draw(st.floats(-radius, width + radius)), draw(st.floats(-radius, height + radius))
    return cut_disc(height, width, cx, cy, radius)
