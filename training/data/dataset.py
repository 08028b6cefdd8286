"""Training patches: crops of the working-scale images, lesion-centred in part, augmented.

Every patch is a pure function of ``(seed, index)``: ``PatchDataset[i]`` seeds its own
generator from both, so a run that resumes at iteration ``r`` draws exactly the patches the
uninterrupted run would have, whatever the worker or process layout. ``IterationBatchSampler``
maps (iteration, rank) to the indices of that rank's batch, DistributedSampler-style: rank ``q``
of ``W`` takes indices ``((r * W) + q) * B ... + B - 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from training.data.cache import CachedSample, downsample_mask
from training.data.camera import camera_effects


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    rot90: bool = True
    brightness: float = 0.1
    """Additive brightness jitter, as a fraction of 255 (uniform in +-)."""
    contrast: float = 0.1
    """Multiplicative contrast jitter about the patch mean (uniform in 1 +- contrast)."""
    gamma: float = 0.1
    """Gamma drawn log-uniformly in [1/(1+gamma), 1+gamma]."""
    scale: float = 0.1
    """Scale jitter: the crop covers crop_size / s pixels, s uniform in 1 +- scale."""
    resolution: float = 0.0
    """Other cameras (``training.data.camera``), each on half the patches: a resolution of 1 - u * resolution."""
    blur: float = 0.0
    """Defocus: a Gaussian blur of sigma up to ``blur`` working-scale pixels."""
    white_balance: float = 0.0
    """A gain per colour channel uniform in 1 +- white_balance."""
    vignetting: float = 0.0
    """Illumination falling by up to ``vignetting`` across the patch."""
    jpeg_quality: int = 100
    """JPEG re-compression at a quality drawn between this and 100; 100 is off."""

    def __post_init__(self) -> None:
        for name, low, high in [("resolution", 0, 0.95), ("blur", 0, 20), ("white_balance", 0, 0.9),
                                ("vignetting", 0, 1), ("jpeg_quality", 1, 100)]:
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name}: must be in [{low}, {high}], got {getattr(self, name)}")

    @property
    def camera(self) -> bool:
        return bool(self.resolution or self.blur or self.white_balance or self.vignetting or self.jpeg_quality < 100)

    @classmethod
    def from_dict(cls, data: dict | None) -> AugmentConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown augment options: {sorted(unknown)} (known: {sorted(known)})")
        return cls(**data)


class PatchDataset(Dataset):
    """``dataset[i]`` -> (image float32 (3, c, c) on 0..255, masks float32 (C, c, c)), deterministic in i.

    A share ``lesion_share`` of the patches is centred (up to a random shift of a quarter crop) on
    a lesion pixel, shared evenly between the samples' lesion channels (an image without the
    lesion drawn falls back to the next one it has, or to a random centre); the rest are centred
    anywhere on the image. Pixels outside the image are black, like the fundus's surround.
    """

    def __init__(
        self,
        samples: list[CachedSample],
        crop_size: int,
        lesion_share: float = 0.5,
        augment: AugmentConfig = AugmentConfig(),
        seed: int = 0,
    ):
        if not samples:
            raise ValueError("PatchDataset needs at least one image")
        if crop_size < 8:
            raise ValueError(f"crop_size must be at least 8, got {crop_size}")
        if not 0.0 <= lesion_share <= 1.0:
            raise ValueError(f"lesion_share must be in [0, 1], got {lesion_share}")
        self.samples = samples
        self.crop_size = int(crop_size)
        self.lesion_share = float(lesion_share)
        self.augment = augment
        self.seed = int(seed)
        # Flat indices of lesion pixels per image and lesion, for lesion-centred crops.
        self.lesion_pixels = [[np.flatnonzero(m) for m in s.masks] for s in samples]

    def __len__(self) -> int:
        return 2**62  # indices are drawn by IterationBatchSampler; patches never repeat

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index)])

    def centre(self, rng: np.random.Generator, image_index: int) -> tuple[float, float]:
        sample = self.samples[image_index]
        h, w = sample.image.shape[:2]
        if rng.random() < self.lesion_share:
            count = len(self.lesion_pixels[image_index])
            first = int(rng.random() * count)  # a lesion drawn evenly; the next ones stand in where it has none
            for lesion in [*range(first, count), *range(first)]:
                pixels = self.lesion_pixels[image_index][lesion]
                if len(pixels):
                    flat = pixels[rng.integers(len(pixels))]
                    y, x = divmod(int(flat), w)
                    shift = self.crop_size / 4
                    return y + rng.uniform(-shift, shift), x + rng.uniform(-shift, shift)
        half = self.crop_size / 2
        return rng.uniform(min(half, h / 2), max(h - half, h / 2)), rng.uniform(min(half, w / 2), max(w - half, w / 2))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        image_index = int(rng.integers(len(self.samples)))
        sample = self.samples[image_index]
        cy, cx = self.centre(rng, image_index)
        a = self.augment
        scale = rng.uniform(1 - a.scale, 1 + a.scale) if a.scale > 0 else 1.0
        c = self.crop_size
        source = max(1, int(round(c / scale)))  # the crop covers source x source working-scale pixels
        top, left = int(round(cy - source / 2)), int(round(cx - source / 2))
        image = _window(sample.image, top, left, source)
        masks = np.ascontiguousarray(_window(sample.masks.transpose(1, 2, 0), top, left, source).transpose(2, 0, 1))
        if source != c:
            interpolation = cv2.INTER_AREA if source > c else cv2.INTER_LINEAR
            image = cv2.resize(image, (c, c), interpolation=interpolation)
            if source > c:  # by coverage, keeping every lesion (a one-pixel MA must not vanish)
                masks = np.stack([downsample_mask(m, (c, c)) for m in masks])
            else:
                masks = np.stack([cv2.resize(m.view(np.uint8), (c, c), interpolation=cv2.INTER_NEAREST) for m in masks])
        if a.camera:
            image = camera_effects(np.random.default_rng([self.seed, int(index), 1]), image, a)
        image = self.photometric(rng, image)
        if a.flips and rng.random() < 0.5:
            image, masks = image[:, ::-1], masks[:, :, ::-1]
        if a.flips and rng.random() < 0.5:
            image, masks = image[::-1], masks[:, ::-1]
        if a.rot90:
            k = int(rng.integers(4))
            if k:
                image, masks = np.rot90(image, k, axes=(0, 1)), np.rot90(masks, k, axes=(1, 2))
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        masks_t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))
        return image_t, masks_t

    def photometric(self, rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        """Gamma, then contrast about the mean, then brightness, through one lookup table: uint8 in, float32 out."""
        a = self.augment
        # Always draw the same number of values so patches stay aligned whatever is switched on.
        brightness, contrast, gamma = (float(v) for v in rng.uniform(-1, 1, size=3))
        levels = np.arange(256, dtype=np.float64)
        if a.gamma > 0:
            levels = 255.0 * (levels / 255.0) ** math.exp(gamma * math.log1p(a.gamma))
        if a.contrast > 0:
            histogram = np.bincount(image.ravel(), minlength=256)
            mean = float(histogram @ levels) / max(int(histogram.sum()), 1)
            levels = (levels - mean) * (1 + contrast * a.contrast) + mean
        if a.brightness > 0:
            levels = levels + brightness * a.brightness * 255.0
        table = np.clip(levels, 0, 255).astype(np.float32).reshape(1, 256)
        return cv2.LUT(np.ascontiguousarray(image), table)


def _window(array: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """array[top:top+size, left:left+size], zero where the window leaves the array."""
    h, w = array.shape[:2]
    out = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = array[y0:y1, x0:x1]
    return out


class IterationBatchSampler(Sampler[list[int]]):
    """The batches of iterations ``start .. stop-1`` for one rank: a list of dataset indices each."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.stop = int(start), int(stop)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)

    def indices(self, iteration: int) -> list[int]:
        first = (iteration * self.world_size + self.rank) * self.batch_size
        return list(range(first, first + self.batch_size))

    def __iter__(self):
        for iteration in range(self.start, self.stop):
            yield self.indices(iteration)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)
