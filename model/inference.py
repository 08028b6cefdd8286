"""Tiled (sliding-window) inference on full-size fundus photographs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from model.calibration import Calibration
from model.fov import FovMapping, fov_mask, working_mapping, working_size
from model.network import RedSeg
from model.precision import autocast, check_precision, to_channels_last
from model.tta import TTA_MODES, augmented, check_tta

NETWORK_STRIDE = 16
"""Downsampling of the default network (four poolings); ``model.encoder.stride`` gives a model's own."""


@dataclass(frozen=True)
class TileSettings:
    tile_size: int = 1360
    """Largest tile side, in pixels at the working scale. Each axis uses as few tiles as fit, each shrunk
    to the least size that still covers the image. 1360 holds any photograph scaled by its fundus disc
    (``model.fov.max_working_side``: 1348) in one tile, so an IDRiD photograph runs as one 976x1200 tile
    instead of two 976x640 ones: no seam, and 0.90 of the time on torch, 0.93-0.98 on OpenVINO int8
    (``bench/tiles.py``)."""
    min_overlap: int = 64
    """Least overlap between neighbouring tiles; it is also the width of the blending ramp."""
    batch_size: int = 4
    fov_mask: bool = True
    """Set the probability to 0 outside the fundus's circular field of view."""
    precision: str = "auto"
    """``auto``: bf16 autocast where the device computes bf16 natively (CUDA, CPUs with AVX512-BF16/AMX),
    else fp32; ``bf16`` or ``fp32`` force one (see ``model.precision``)."""
    tta: str = "none"
    """Test-time augmentation (``model.tta``): ``none``, ``hflip``, ``flips`` or ``dihedral``."""

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be at least 16, got {self.tile_size}")
        if not 0 <= self.min_overlap < self.tile_size:
            raise ValueError(f"min_overlap must be in [0, tile_size), got {self.min_overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        check_precision(self.precision)
        check_tta(self.tta)


class TileLayout(NamedTuple):
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]

    @property
    def corners(self) -> list[tuple[int, int]]:
        return [(y, x) for y in self.ys for x in self.xs]


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def tile_span(length: int, tile: int, min_overlap: int, align: int = 1) -> tuple[int, list[int]]:
    """The tile length used on one axis and its start offsets covering ``[0, length)``.

    As few tiles as ``tile`` allows, each the least multiple of ``align`` that covers the axis
    with ``min_overlap``; starts are multiples of ``align`` spread evenly, the last flush with
    the end. A ``length`` that is not a multiple of ``align`` is first padded up to one.
    """
    length = _round_up(length, align)
    tile = max(align, tile // align * align)
    overlap = _round_up(min_overlap, align)
    if length <= tile:
        return length, [0]
    if overlap >= tile:
        raise ValueError(f"min_overlap {min_overlap} leaves no stride on tiles of {tile} aligned to {align}")
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, _round_up(math.ceil((length + (count - 1) * overlap) / count), align))
    last = length - size
    return size, [i * last // (count - 1) // align * align for i in range(count)]


def tile_layout(height: int, width: int, settings: TileSettings, align: int = NETWORK_STRIDE) -> TileLayout:
    """The tiles ``sliding_window`` runs on an image of this size at the working scale."""
    tile_h, ys = tile_span(height, settings.tile_size, settings.min_overlap, align)
    tile_w, xs = tile_span(width, settings.tile_size, settings.min_overlap, align)
    return TileLayout(tile_h, tile_w, ys, xs)


def tile_grid(height: int, width: int, settings: TileSettings, align: int = NETWORK_STRIDE) -> list[tuple[int, int]]:
    """(y, x) of every tile's top-left corner on an image of this size at the working scale."""
    return tile_layout(height, width, settings, align).corners


def blend_weight(height: int, width: int, ramp: int) -> torch.Tensor:
    """1 inside, falling to near 0 over ``ramp`` pixels at the edges along a cosine-squared (Hann) ramp.

    A tile's outermost pixels, which saw the network's zero padding, get almost no weight, and the
    ramp has no kink, so neighbouring tiles blend without a visible seam.
    """

    def profile(n: int) -> torch.Tensor:
        distance = torch.minimum(torch.arange(n), torch.arange(n).flip(0)).float()
        return torch.sin(math.pi / 2 * ((distance + 0.5) / max(ramp, 1)).clamp(max=1.0)) ** 2

    return profile(height)[:, None] * profile(width)[None, :]


def fused_logits(model: RedSeg, batch: torch.Tensor, precision: str = "auto") -> torch.Tensor:
    """The fused logits (N, C, h, w), one channel per lesion, of a batch of normalised tiles (N, 3, h, w): the torch network on the
    fast path (channels_last, bf16 autocast where native), or an engine standing in for it
    (``model.backends.OpenVINORedSeg``), which keeps its own layout and precision."""
    if not isinstance(model, RedSeg):
        return model(batch).fused
    with autocast(batch.device, precision):
        return model(to_channels_last(batch)).fused


@torch.inference_mode()
def sliding_window(model: RedSeg, image: torch.Tensor, settings: TileSettings) -> torch.Tensor:
    """Sigmoid probabilities (C, H, W), one per lesion, for a normalised image (1, 3, H, W) on the model's device.

    ``model`` is the torch network or an engine standing in for it (``fused_logits``).

    The image is padded (edge-replicated) to a multiple of the network's stride and tiles start
    on multiples of it, so every tile pools on the same grid as a whole-image forward would.
    """
    _, _, height, width = image.shape
    align = model.encoder.stride
    padded = F.pad(image, (0, _round_up(width, align) - width, 0, _round_up(height, align) - height), mode="replicate")
    layout = tile_layout(padded.shape[2], padded.shape[3], settings, align)
    tile_h, tile_w = layout.tile_h, layout.tile_w
    device = image.device
    weight = blend_weight(tile_h, tile_w, settings.min_overlap).to(device)
    grid = layout.corners
    if len(grid) == 1:
        logits = fused_logits(model, padded, settings.precision)
        return torch.sigmoid(logits.float())[0, :, :height, :width]
    total = torch.zeros((len(model.config.lesions), *padded.shape[2:]), device=device)
    weight_sum = torch.zeros((1, *padded.shape[2:]), device=device)
    for first in range(0, len(grid), settings.batch_size):
        corners = grid[first : first + settings.batch_size]
        batch = torch.cat([padded[..., y : y + tile_h, x : x + tile_w] for y, x in corners])
        logits = fused_logits(model, batch, settings.precision)
        probabilities = torch.sigmoid(logits.float().contiguous())
        for (y, x), tile in zip(corners, probabilities):
            total[:, y : y + tile_h, x : x + tile_w].addcmul_(tile, weight)
            weight_sum[:, y : y + tile_h, x : x + tile_w] += weight
    return total.div_(weight_sum)[:, :height, :width]


def tile_count(height: int, width: int, model: RedSeg, settings: TileSettings, image: np.ndarray | None = None) -> int:
    """How many tiles ``predict_probabilities`` runs on an image of this (original) size.

    A model that scales by the fundus disc (``fov_diameter``) needs the ``image`` itself.
    """
    if model.config.fov_diameter is not None:
        if image is None:
            raise ValueError("a model that scales by the fundus disc needs the image to count its tiles")
        return working_tile_count(working_mapping(image, model.config).size, model, settings)
    return working_tile_count(working_size(height, width, model.config.working_long_side), model, settings)


def working_tile_count(size: tuple[int, int], model: RedSeg, settings: TileSettings) -> int:
    """How many tiles ``predict_working_scale`` runs on an image of ``size`` (h, w) at the working scale."""
    align = model.encoder.stride
    sizes = [size[::-1] if quarter_turns % 2 else size for quarter_turns, _ in TTA_MODES[settings.tta]]
    return sum(len(tile_grid(_round_up(h, align), _round_up(w, align), settings, align)) for h, w in sizes)


@torch.inference_mode()
def predict_working_scale(
    model: RedSeg, image: np.ndarray, settings: TileSettings = TileSettings(), calibration: Calibration | None = None
) -> torch.Tensor:
    """Probabilities (C, h, w), one per lesion, on the model's device for an RGB uint8 image already at the working scale."""
    device = next(model.parameters()).device
    tensor = torch.from_numpy(image).to(device).permute(2, 0, 1)[None]
    probabilities = augmented(lambda view: sliding_window(model, view, settings), model.normalize(tensor), settings.tta)
    if calibration is not None:
        probabilities = calibration.apply(probabilities, settings.tta)
    if settings.fov_mask:
        probabilities *= torch.from_numpy(fov_mask(image)).to(device)
    return probabilities


@torch.inference_mode()
def predict_probabilities(
    model: RedSeg,
    image: np.ndarray,
    settings: TileSettings = TileSettings(),
    calibration: Calibration | None = None,
    mapping: FovMapping | None = None,
) -> np.ndarray:
    """Per-lesion probability maps, float32 (C, H, W) in 0..1 (``model.config.lesions`` order), for an RGB uint8 image (H, W, 3).

    The image is mapped to the model's working scale (``model.fov``: by its fundus disc, or by its
    long side), cut into overlapping tiles run in batches on the model's device, blended
    (averaged over the ``settings.tta`` views), calibrated where a ``calibration`` is given, and
    mapped back to the original resolution. A ``mapping`` already made for this image is used as is.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}")
    mapping = mapping or working_mapping(image, model.config)
    probabilities = predict_working_scale(model, mapping.to_working(image), settings, calibration)
    return mapping.to_original(probabilities)
