"""IDRiD images and masks resized once to the working scale, cached on disk and in memory.

Decoding a 4288x2848 JPEG costs about a quarter of a second on these machines; the trainer
reads each image once, maps it to the model's working scale exactly as inference does
(``model.fov.working_mapping``: scaled so the fundus disc is ``fov_diameter`` pixels across and
cropped to it, or, with ``fov_diameter`` None, scaled by the long side) and stores the result as
``.npz`` under a cache folder, keyed by the files' paths, sizes and modification times and by the
scale settings, so a changed file or another scale misses.

Masks are downsampled by pixel coverage (``INTER_AREA`` on the 0/1 mask): a working-scale pixel
is lesion where at least half of it is covered, and every lesion component that would vanish
that way (a microaneurysm of a few full-resolution pixels) keeps its most-covered pixel(s).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from model.atomic import atomic_write
from model.config import RedSegConfig
from model.fov import working_mapping
from training.data.idrid import Sample, load_sample

CACHE_VERSION = 2
DEFAULT_CACHE_DIR = Path(".cache/idrid")


class CachedSample(NamedTuple):
    name: str
    image: np.ndarray
    """RGB uint8 (h, w, 3) at the working scale."""
    masks: np.ndarray
    """bool (C, h, w) at the working scale, one channel per lesion of the sample's ``mask_paths``."""


def downsample_mask(mask: np.ndarray, size: tuple[int, int], keep_threshold: float = 0.5) -> np.ndarray:
    """A bool mask (H, W) resized to ``size`` (h, w) by coverage, keeping every lesion component."""
    h, w = size
    if mask.shape == (h, w):
        return mask.astype(bool)
    coverage = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)
    touched = coverage > 1e-6
    result = coverage >= keep_threshold
    count, labels = cv2.connectedComponents(touched.astype(np.uint8), connectivity=8)
    if count > 1:
        where = np.flatnonzero(touched)
        flat_labels = labels.ravel()[where]
        flat_cov = coverage.ravel()[where]
        peak = np.zeros(count, dtype=np.float32)
        np.maximum.at(peak, flat_labels, flat_cov)
        lost = peak < keep_threshold
        lost[0] = False
        rescue = lost[flat_labels] & (flat_cov >= peak[flat_labels] - 1e-6)
        result.ravel()[where[rescue]] = True
    return result


def scale_config(scale: int | RedSegConfig) -> RedSegConfig:
    """The model config whose scale settings apply; a bare number is a long side (no disc scaling)."""
    return scale if isinstance(scale, RedSegConfig) else RedSegConfig(working_long_side=int(scale))


def resize_sample(image: np.ndarray, masks: np.ndarray, scale: int | RedSegConfig) -> tuple[np.ndarray, np.ndarray]:
    """Image and masks mapped to the working scale as ``model.inference`` maps a photograph."""
    mapping = working_mapping(image, scale_config(scale))
    small_masks = np.stack([downsample_mask(mapping.crop(m), mapping.size) for m in masks])
    return mapping.to_working(image), small_masks


def scale_settings(config: RedSegConfig) -> dict:
    return {"long_side": config.working_long_side, "fov_diameter": config.fov_diameter, "fov_margin": config.fov_margin}


def cache_key(sample: Sample, scale: int | RedSegConfig) -> str:
    settings = scale_settings(scale_config(scale))
    parts = {"version": CACHE_VERSION, **settings}
    for label, path in [("image", sample.image_path), *[(k, v) for k, v in sample.mask_paths.items()]]:
        if path is None:
            parts[label] = None
        else:
            stat = os.stat(path)
            parts[label] = [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return f"{sample.name}-{settings['long_side']}-{digest}"


class WorkingScaleCache:
    """Working-scale images and masks: memory first, then the disk cache, then the original files."""

    def __init__(self, scale: int | RedSegConfig, cache_dir: str | Path | None = DEFAULT_CACHE_DIR):
        self.scale = scale_config(scale)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, CachedSample] = {}
        self.hits = {"memory": 0, "disk": 0, "miss": 0}

    def path_for(self, sample: Sample) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{cache_key(sample, self.scale)}.npz"

    def get(self, sample: Sample) -> CachedSample:
        key = cache_key(sample, self.scale)
        if key in self._memory:
            self.hits["memory"] += 1
            return self._memory[key]
        path = self.path_for(sample)
        item = None
        if path is not None and path.is_file():
            try:
                with np.load(path) as data:
                    item = CachedSample(sample.name, data["image"], data["masks"].astype(bool))
                self.hits["disk"] += 1
            except (OSError, ValueError, KeyError):
                item = None  # corrupt cache file: rebuild it
        if item is None:
            self.hits["miss"] += 1
            image, masks = resize_sample(*load_sample(sample), self.scale)
            item = CachedSample(sample.name, image, masks)
            if path is not None:
                _atomic_savez(path, image=image, masks=masks)
        self._memory[key] = item
        return item

    def get_all(self, samples: list[Sample], progress: bool = False) -> list[CachedSample]:
        if progress:
            from tqdm import tqdm

            samples = tqdm(samples, desc="cache", unit="img", leave=False)
        return [self.get(s) for s in samples]


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


__all__ = ["CachedSample", "WorkingScaleCache", "downsample_mask", "resize_sample", "cache_key"]
