"""Field of view: find the fundus disc, and map a photograph to the working scale by it.

A fundus photograph shows the retina as a bright disc on a dark surround, often cut by the frame.
A checkpoint with ``RedSegConfig.fov_diameter`` set was trained with every image scaled so that
this disc is ``fov_diameter`` working pixels across; any photograph (cropped, padded, a small
upload, another camera) is scaled the same way by its own disc and cropped to the disc plus a
margin, and the network's maps are mapped back onto the photograph's own pixels. A checkpoint
without it scales the whole image by its long side (``working_long_side``), as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from model.config import RedSegConfig

FOV_RED_THRESHOLD = 20
"""Red-channel level (0..255) below which a pixel is the black surround of the fundus."""

DETECT_LONG_SIDE = 1024
"""The disc is found on every n-th pixel of the image, n the least that leaves at most this long side."""

MIN_ARC_DEGREES = 90
"""Least angle of rim (not counting where the frame cuts the disc) that a found disc must show."""

IDRID_DISC_DIAMETER = 3413.2
"""The fundus disc's diameter in IDRiD's 4288x2848 photographs: the median of ``detect_disc`` over the
54 segmentation images (``python -m training.data.fov_reference``; 52 of them within 3410.9-3427.5,
IDRiD_04 and _12, taken with a wider field, 3799 and 3801)."""

IDRID_LONG_SIDE = 4288

ALIGN = 16
"""Crops anchored to the disc are trimmed in steps of this many working pixels (the network's stride)."""

MAX_ENLARGEMENT = 4.0
"""The most a photograph is enlarged to reach the working scale. A smaller one cannot hold the retina's
detail at the model's scale (and would cost the square of its enlargement in memory and time): it is
refused with ``PhotographTooSmall`` before any work. IDRiD's photographs are shrunk about 3 times; a copy
downscaled to 640 pixels wide is enlarged about 2.3 times."""


class PhotographTooSmall(ValueError):
    """The photograph's field of view is too few pixels across for the model's working scale."""

    def __init__(self, measure: str, across: float, needed: int):
        super().__init__(
            f"the photograph is too small for the model: {measure} is {across:.0f} pixels, and at least {needed} are "
            f"needed (the model enlarges a photograph at most {MAX_ENLARGEMENT:g} times); send the camera's original "
            "photograph"
        )
        self.across = across
        self.needed = needed


@dataclass(frozen=True)
class Disc:
    """The fundus disc in the photograph's pixels (x right, y down, pixel centres at integers)."""

    cx: float
    cy: float
    radius: float
    found: bool = True
    """False: no rim was visible (the photograph lies inside the disc); this is the circle around it."""

    @property
    def diameter(self) -> float:
        return 2 * self.radius


@dataclass(frozen=True)
class FovMapping:
    """Original photograph <-> working-scale image: a box of the photograph, resized to ``size``.

    The box (``top``, ``left``, ``bottom``, ``right``: original pixels, end exclusive) may reach
    beyond the photograph; that part reads as black. With ``scale`` set, both directions resample
    at exactly that factor, so two boxes whose corners differ by whole steps of 16 working pixels
    sample the photograph on the same grid.
    """

    height: int
    width: int
    top: int
    left: int
    bottom: int
    right: int
    size: tuple[int, int]
    """(h, w) of the working-scale image."""
    scale: float | None = None
    """Working pixels per original pixel; None: each axis scaled to fit ``size`` (long-side scaling)."""
    disc: Disc | None = None
    """The disc the mapping was made from; None for long-side scaling."""

    @property
    def box_shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The box of an (H, W, ...) array at the photograph's size, zero where it reaches beyond it."""
        if array.shape[:2] != (self.height, self.width):
            raise ValueError(f"expected an array of {self.height}x{self.width}, got {array.shape[:2]}")
        if (self.top, self.left, self.box_shape) == (0, 0, (self.height, self.width)):
            return array
        out = np.zeros((*self.box_shape, *array.shape[2:]), dtype=array.dtype)
        (dy0, dy1, sy0, sy1), (dx0, dx1, sx0, sx1) = self._overlap(self.box_shape)
        out[dy0:dy1, dx0:dx1] = array[sy0:sy1, sx0:sx1]
        return out

    def to_working(self, image: np.ndarray) -> np.ndarray:
        """The working-scale image (h, w, 3) of an RGB photograph."""
        box = self.crop(image)
        if box.shape[:2] == self.size:
            return np.ascontiguousarray(box)
        interpolation = cv2.INTER_AREA if self.size[0] < box.shape[0] else cv2.INTER_LINEAR
        if self.scale is None:
            return cv2.resize(box, self.size[::-1], interpolation=interpolation)
        small = cv2.resize(box, None, fx=self.scale, fy=self.scale, interpolation=interpolation)
        assert small.shape[:2] == self.size, (small.shape, self.size)
        return small

    def to_original(self, maps: torch.Tensor) -> np.ndarray:
        """Working-scale maps (C, h, w) as float32 (C, H, W) on the photograph's pixels, 0 outside the box."""
        if maps.shape[1:] == self.box_shape == (self.height, self.width):
            return np.ascontiguousarray(maps.float().cpu().numpy())
        if maps.device.type == "cpu" and self.scale is not None:
            return self._warp_back(maps.float().numpy())
        boxed = self._resize_back(maps)
        if boxed.shape[1:] == (self.height, self.width) and (self.top, self.left) == (0, 0):
            return boxed
        full = np.zeros((len(boxed), self.height, self.width), dtype=np.float32)
        (dy0, dy1, sy0, sy1), (dx0, dx1, sx0, sx1) = self._overlap(boxed.shape[1:])
        full[:, sy0:sy1, sx0:sx1] = boxed[:, dy0:dy1, dx0:dx1]
        return full

    def _resize_back(self, maps: torch.Tensor) -> np.ndarray:
        """Maps resized to the box: to its exact shape, or on a GPU at exactly 1 / ``scale`` (a pixel more or less)."""
        maps = maps.float()
        if maps.device.type == "cuda":
            if self.scale is None:
                resized = F.interpolate(maps[None], size=self.box_shape, mode="bilinear", align_corners=False)
            else:
                resized = F.interpolate(maps[None], scale_factor=1 / self.scale, mode="bilinear", align_corners=False,
                                        recompute_scale_factor=False)
            return resized[0].clamp_(0, 1).cpu().numpy()
        boxed = np.empty((len(maps), *self.box_shape), dtype=np.float32)
        for channel, small_map in enumerate(np.ascontiguousarray(maps.numpy())):
            cv2.resize(small_map, self.box_shape[::-1], dst=boxed[channel], interpolation=cv2.INTER_LINEAR)
        return boxed  # bilinear: probabilities stay within 0..1

    def _warp_back(self, small: np.ndarray) -> np.ndarray:
        """Working-scale maps straight onto the photograph's pixels at exactly 1 / ``scale``, 0 outside the box:
        one bilinear pass per map, with no intermediate box-sized array to allocate, copy and clip."""
        s = self.scale
        inverse = np.array([[s, 0.0, (0.5 - self.left) * s - 0.5], [0.0, s, (0.5 - self.top) * s - 0.5]])
        full = np.empty((len(small), self.height, self.width), dtype=np.float32)
        for channel, small_map in enumerate(small):
            cv2.warpAffine(np.ascontiguousarray(small_map), inverse, (self.width, self.height), dst=full[channel],
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return full

    def _overlap(self, shape: tuple[int, int]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Per axis: (start, end) in a box of ``shape`` at (top, left) and in the photograph, of their common part."""

        def axis(start: int, extent: int, length: int) -> tuple[int, int, int, int]:
            first, last = max(start, 0), min(start + extent, length)
            return first - start, last - start, first, last

        return axis(self.top, shape[0], self.height), axis(self.left, shape[1], self.width)


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def long_side_mapping(height: int, width: int, long_side: int) -> FovMapping:
    """The whole photograph, scaled so that its longer side is ``long_side`` pixels."""
    return FovMapping(height, width, 0, 0, height, width, working_size(height, width, long_side))


def aligned_scale(target: float) -> tuple[float, int]:
    """The scale nearest ``target`` at which a whole number of original pixels (returned) makes a
    whole number of ``ALIGN``-pixel working cells; at least 32 such pixels, so within 1.6 % of it."""
    cells = max(1, math.ceil(2 * target))
    step = max(1, round(ALIGN * cells / target))
    return ALIGN * cells / step, step


def disc_mapping(disc: Disc, height: int, width: int, diameter: float, margin: float) -> FovMapping:
    """Scale so the disc is about ``diameter`` working pixels across; crop to it plus ``margin`` x radius.

    The box is the square around the disc, trimmed where the frame cuts it in whole steps of
    ``aligned_scale``'s pixel count: its corners then sit on the same grid of the photograph,
    relative to the disc, whether or not the photograph was cropped or padded, so the working
    image and the network's pooling grid are the same where the two share content.
    """
    scale, step = aligned_scale(diameter / disc.diameter)
    half = disc.radius * (1 + margin)
    extent = step * math.ceil(2 * half / step)

    def axis(centre: float, length: int) -> tuple[int, int]:
        start = round(centre - half)
        end = start + extent
        start += step * (max(0, -start) // step)
        end -= step * (max(0, end - length) // step)
        return start, end

    top, bottom = axis(disc.cy, height)
    left, right = axis(disc.cx, width)
    size = (round((bottom - top) * scale), round((right - left) * scale))
    return FovMapping(height, width, top, left, bottom, right, size, scale, disc)


def idrid_fov_diameter(long_side: int) -> float:
    """The disc diameter, in working pixels, of an IDRiD photograph scaled to ``long_side``."""
    return round(IDRID_DISC_DIAMETER * long_side / IDRID_LONG_SIDE, 1)


def working_mapping(image: np.ndarray, config: RedSegConfig) -> FovMapping:
    """How a model with ``config`` sees this RGB photograph: by its disc, or by its long side.

    Raises ``PhotographTooSmall`` where that would enlarge it more than ``MAX_ENLARGEMENT`` times,
    so the working-scale image is never much larger than the model's own scale.
    """
    height, width = image.shape[:2]
    if config.fov_diameter is None:
        _check_enlargement("its longer side", max(height, width), config.working_long_side)
        return long_side_mapping(height, width, config.working_long_side)
    disc = detect_disc(image)
    measure = "its fundus disc's diameter" if disc.found else "no fundus disc was found, and the image's diagonal"
    _check_enlargement(measure, disc.diameter, config.fov_diameter)
    return disc_mapping(disc, height, width, config.fov_diameter, config.fov_margin)


def max_working_side(config: RedSegConfig) -> int:
    """The longest side, in working pixels, of any image ``working_mapping`` makes for ``config``: the disc
    and its margin (or the long side), plus the alignment steps of the most enlarged photograph."""
    if config.fov_diameter is None:
        return config.working_long_side
    return math.ceil(config.fov_diameter * (1 + config.fov_margin)) + ALIGN * (2 * math.ceil(MAX_ENLARGEMENT) + 1)


def _check_enlargement(measure: str, across: float, working: float) -> None:
    if working > MAX_ENLARGEMENT * across:
        raise PhotographTooSmall(measure, across, math.ceil(working / MAX_ENLARGEMENT))


def synthetic_fundus(config: RedSegConfig) -> np.ndarray:
    """A plain orange disc on black that a model with ``config`` sees at its own scale (no resizing):
    a warm-up input as costly as a real photograph."""
    if config.fov_diameter is None:
        height, width = round(config.working_long_side * 2 / 3), config.working_long_side
        diameter = 0.95 * height
    else:
        height = width = round(config.fov_diameter * (1 + config.fov_margin))
        diameter = config.fov_diameter
    image = np.zeros((height, width, 3), np.uint8)
    centre = (round((width - 1) / 2), round((height - 1) / 2))
    cv2.circle(image, centre, round(diameter / 2), (150, 60, 20), thickness=-1, lineType=cv2.LINE_AA)
    return image


def fov_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the fundus's field of view in an RGB uint8 image."""
    mask = (image[..., 0] > FOV_RED_THRESHOLD).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel).astype(bool)


def detect_disc(image: np.ndarray) -> Disc:
    """The fundus disc of an RGB uint8 photograph, from the rim of its bright region.

    The largest region brighter than the surround (red channel) is outlined; the outline's
    points that lie on the frame are dropped (the frame may cut the disc) and a circle is fitted
    to the rest, twice more without the points that stray from it (a notch, a dim rim). With
    less than ``MIN_ARC_DEGREES`` of rim visible the photograph is taken to lie inside the disc:
    the circle through its corners.
    """
    height, width = image.shape[:2]
    inside = Disc((width - 1) / 2, (height - 1) / 2, math.hypot(height, width) / 2, found=False)
    step = math.ceil(max(height, width) / DETECT_LONG_SIDE)
    red = np.ascontiguousarray(image[::step, ::step, 0])
    points = _rim_points(cv2.medianBlur(red, 5) > FOV_RED_THRESHOLD)
    circle = _robust_circle(points) if len(points) >= 20 else None
    if circle is None:
        return inside
    coarse = Disc(*(value * step for value in circle))
    return _refine(image, coarse, step) or coarse


def _refine(image: np.ndarray, disc: Disc, step: int, rays: int = 720) -> Disc | None:
    """The disc refitted to its rim found at full resolution along rays from the coarse centre.

    Along each ray that stays inside the photograph, the rim is where the red channel, smoothed
    along the ray, last falls through the surround's level (linear interpolation between samples).
    """
    height, width = image.shape[:2]
    angles = np.linspace(0, 2 * np.pi, rays, endpoint=False)
    offsets = np.arange(-6 * step, 6 * step + 0.25, 0.5)
    xs = disc.cx + np.cos(angles)[:, None] * (disc.radius + offsets)
    ys = disc.cy + np.sin(angles)[:, None] * (disc.radius + offsets)
    inside = ((xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)).all(axis=1)
    if inside.sum() < 20:
        return None
    profiles = _bilinear(image[..., 0], xs[inside], ys[inside])
    profiles = cv2.blur(profiles, (5, 1), borderType=cv2.BORDER_REPLICATE)
    above = profiles > FOV_RED_THRESHOLD
    falls = above[:, :-1] & ~above[:, 1:]
    has_fall = falls.any(axis=1)
    last = falls.shape[1] - 1 - np.argmax(falls[:, ::-1], axis=1)
    rows = np.arange(len(profiles))
    before, after = profiles[rows, last], profiles[rows, last + 1]
    fraction = (before - FOV_RED_THRESHOLD) / np.maximum(before - after, 1e-6)
    radial = disc.radius + offsets[0] + 0.5 * (last + fraction)
    chosen = angles[inside][has_fall]
    points = np.column_stack([disc.cx + np.cos(chosen) * radial[has_fall], disc.cy + np.sin(chosen) * radial[has_fall]])
    circle = _robust_circle(points) if len(points) >= 20 else None
    return Disc(*circle) if circle is not None else None


def _bilinear(channel: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``channel`` at fractional (x, y) positions inside it, float32."""
    x0 = np.minimum(np.floor(xs).astype(np.intp), channel.shape[1] - 2)
    y0 = np.minimum(np.floor(ys).astype(np.intp), channel.shape[0] - 2)
    fx, fy = xs - x0, ys - y0
    top = channel[y0, x0] * (1 - fx) + channel[y0, x0 + 1] * fx
    bottom = channel[y0 + 1, x0] * (1 - fx) + channel[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _rim_points(bright: np.ndarray) -> np.ndarray:
    """(x, y) of the outline of the largest bright region, without the points on the frame."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.empty((0, 2))
    region = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = max(contours, key=len)[:, 0, :].astype(np.float64)
    h, w = region.shape
    on_frame = (points[:, 0] < 2) | (points[:, 0] > w - 3) | (points[:, 1] < 2) | (points[:, 1] > h - 3)
    radius = math.sqrt(region.sum() / math.pi)
    return points[~on_frame & ~_straight_runs(points, max(8.0, radius / 2))]


def _straight_runs(points: np.ndarray, min_length: float) -> np.ndarray:
    """Outline points on a horizontal or vertical run of at least ``min_length`` points.

    Such runs are where another frame cut the disc before the photograph was padded: a chord of
    a disc cut at its sides is about a radius long, while the flattest run of its arc, about
    2 sqrt(radius), is far shorter.
    """
    straight = np.zeros(len(points), dtype=bool)
    for axis in (0, 1):
        change = np.flatnonzero(np.diff(points[:, axis]) != 0) + 1
        starts, ends = np.r_[0, change], np.r_[change, len(points)]
        for start, end in zip(starts, ends):
            if end - start >= min_length:
                straight[start:end] = True
    return straight


def _robust_circle(points: np.ndarray) -> tuple[float, float, float] | None:
    """A least-squares circle refitted without outliers, or None where the rim is too short an arc."""
    keep = np.ones(len(points), dtype=bool)
    for _ in range(3):
        cx, cy, radius = _fit_circle(points[keep])
        residual = np.abs(np.hypot(points[:, 0] - cx, points[:, 1] - cy) - radius)
        spread = 1.4826 * np.median(residual[keep])
        keep = residual <= max(1.5, 3 * spread)
        if keep.sum() < 20:
            return None
    angles = np.degrees(np.arctan2(points[keep, 1] - cy, points[keep, 0] - cx))
    covered = len(np.unique(np.floor(angles / 10))) * 10
    if covered < MIN_ARC_DEGREES or not radius > 4:
        return None
    return cx, cy, radius


def _fit_circle(points: np.ndarray) -> tuple[float, float, float]:
    """Algebraic (Kasa) least-squares circle through (x, y) points."""
    x, y = points[:, 0], points[:, 1]
    design = np.column_stack([x, y, np.ones_like(x)])
    (a, b, c), *_ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
    cx, cy = a / 2, b / 2
    return cx, cy, math.sqrt(max(c + cx * cx + cy * cy, 0.0))
