"""Tiled (sliding-window) inference on full-size fundus photographs."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from model.network import RedSeg

FOV_RED_THRESHOLD = 20
"""Red-channel level (0..255) below which a pixel is the black surround of the fundus."""


@dataclass(frozen=True)
class TileSettings:
    tile_size: int = 512
    """Side of the square tiles, in pixels at the working scale."""
    min_overlap: int = 64
    """Least overlap between neighbouring tiles; it is also the width of the blending ramp."""
    batch_size: int = 4
    fov_mask: bool = True
    """Set the probability to 0 outside the fundus's circular field of view."""
    amp: bool = True
    """On CUDA, run the network under bf16 autocast."""

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be at least 16, got {self.tile_size}")
        if not 0 <= self.min_overlap < self.tile_size:
            raise ValueError(f"min_overlap must be in [0, tile_size), got {self.min_overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def tile_starts(length: int, tile: int, min_overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)``, spread evenly, the last flush with the end."""
    if length <= tile:
        return [0]
    count = math.ceil((length - min_overlap) / (tile - min_overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_grid(height: int, width: int, settings: TileSettings) -> list[tuple[int, int]]:
    """(y, x) of every tile's top-left corner on an image of this size at the working scale."""
    ys = tile_starts(height, settings.tile_size, settings.min_overlap)
    xs = tile_starts(width, settings.tile_size, settings.min_overlap)
    return [(y, x) for y in ys for x in xs]


def blend_weight(height: int, width: int, ramp: int) -> torch.Tensor:
    """A truncated pyramid: 1 inside, falling linearly to near 0 over ``ramp`` pixels at the edges."""

    def profile(n: int) -> torch.Tensor:
        distance = torch.minimum(torch.arange(n), torch.arange(n).flip(0)).float()
        return ((distance + 1) / (ramp + 1)).clamp(max=1.0)

    return profile(height)[:, None] * profile(width)[None, :]


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def fov_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the fundus's field of view in an RGB uint8 image."""
    mask = (image[..., 0] > FOV_RED_THRESHOLD).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel).astype(bool)


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.inference_mode()
def sliding_window(model: RedSeg, image: torch.Tensor, settings: TileSettings) -> torch.Tensor:
    """Sigmoid probabilities (2, H, W) for a normalised image (1, 3, H, W) on the model's device."""
    _, _, height, width = image.shape
    tile_h, tile_w = min(settings.tile_size, height), min(settings.tile_size, width)
    device = image.device
    weight = blend_weight(tile_h, tile_w, settings.min_overlap).to(device)
    total = torch.zeros((2, height, width), device=device)
    weight_sum = torch.zeros((1, height, width), device=device)
    grid = tile_grid(height, width, settings)
    for first in range(0, len(grid), settings.batch_size):
        corners = grid[first : first + settings.batch_size]
        batch = torch.cat([image[..., y : y + tile_h, x : x + tile_w] for y, x in corners])
        if device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(device, settings.amp):
            probabilities = torch.sigmoid(model(batch).fused.float())
        for (y, x), tile in zip(corners, probabilities):
            total[:, y : y + tile_h, x : x + tile_w] += tile * weight
            weight_sum[:, y : y + tile_h, x : x + tile_w] += weight
    return total / weight_sum


@torch.inference_mode()
def predict_probabilities(model: RedSeg, image: np.ndarray, settings: TileSettings = TileSettings()) -> np.ndarray:
    """Per-lesion probability maps, float32 (2, H, W) in 0..1, for an RGB uint8 image (H, W, 3).

    The image is resized to the model's working scale, cut into overlapping tiles run in
    batches on the model's device, blended, and resized back to the original resolution.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    device = next(model.parameters()).device
    small_h, small_w = working_size(height, width, model.config.working_long_side)
    interpolation = cv2.INTER_AREA if small_h < height else cv2.INTER_LINEAR
    small = cv2.resize(image, (small_w, small_h), interpolation=interpolation)

    tensor = torch.from_numpy(small).to(device).permute(2, 0, 1)[None]
    probabilities = sliding_window(model, model.normalize(tensor), settings)
    if settings.fov_mask:
        probabilities *= torch.from_numpy(fov_mask(small)).to(device)

    if (small_h, small_w) == (height, width):
        return probabilities.cpu().numpy()
    if device.type == "cuda":
        full = torch.nn.functional.interpolate(probabilities[None], size=(height, width), mode="bilinear")
        return full[0].clamp_(0, 1).cpu().numpy()
    full = cv2.resize(probabilities.permute(1, 2, 0).numpy(), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.clip(full, 0, 1, out=full).transpose(2, 0, 1))
