"""The frozen encoder's stage outputs for each photograph, at the working scale, stored once on disk.

A branch is a few 1x1 convs on the encoder's stage outputs, so with the encoder frozen the only
costly part of training one, the VGG16 forward, is the same at every step: it is run once per
photograph, on the whole working-scale image (as inference's tiles see it, up to their borders),
and each tapped stage is stored as float16 ``.npy`` that the trainer memory-maps. The lesion masks
at the working scale are stored beside them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.atomic import atomic_write
from model.network import RedSeg
from model.precision import autocast, to_channels_last
from training.data.cache import WorkingScaleCache
from training.data.idrid import Sample

STORE_VERSION = 1


@dataclass(frozen=True)
class StoredPhotograph:
    name: str
    masks: np.ndarray
    """bool (C, h, w) at the working scale, one channel per lesion of the store."""
    stages: dict[int, np.ndarray]
    """Per stage (1..5), its output (channels, h / 2**(stage-1), w / 2**(stage-1)), float16."""

    def in_memory(self) -> StoredPhotograph:
        """The same photograph with its stage outputs read into memory (cropping from them is much faster)."""
        return StoredPhotograph(self.name, self.masks, {stage: np.array(values) for stage, values in self.stages.items()})


def store_key(checkpoint_sha256: str, lesions: tuple[str, ...]) -> str:
    """The store's folder name: what decides its contents (a stage's file is added where a run needs it)."""
    parts = {"version": STORE_VERSION, "checkpoint": checkpoint_sha256, "lesions": lesions}
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@torch.inference_mode()
def encoder_stages(model: RedSeg, image: np.ndarray, stages: tuple[int, ...]) -> dict[int, np.ndarray]:
    """The encoder's outputs at ``stages`` for a working-scale RGB image whose sides are multiples of its stride."""
    tensor = to_channels_last(model.normalize(torch.from_numpy(image).permute(2, 0, 1)[None]))
    encoder = model.encoder
    kept, encoder.keep = encoder.keep, frozenset(stages)
    try:
        with autocast(tensor.device):
            taps = encoder(tensor)
    finally:
        encoder.keep = kept
    return {stage: taps[stage - 1][0].float().numpy().astype(np.float16) for stage in stages}


def pad_to_stride(array: np.ndarray, stride: int, channels_first: bool = False) -> np.ndarray:
    """Zero-pad an image (h, w, ...), or with ``channels_first`` masks (C, h, w), at the bottom and right so
    that h and w are multiples of ``stride``: the stored features' grid."""
    h, w = array.shape[1:3] if channels_first else array.shape[:2]
    pad = [(0, -h % stride), (0, -w % stride)]
    pad = [(0, 0), *pad] if channels_first else pad + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pad)


def build_store(
    model: RedSeg, samples: list[Sample], cache: WorkingScaleCache, folder: Path, stages: tuple[int, ...], progress: bool = True
) -> list[StoredPhotograph]:
    """Compute (or find, where stored already) each sample's stage outputs and masks under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if progress:
        from tqdm import tqdm

        samples = tqdm(samples, desc="encoder features", unit="photo")
    stored = []
    for sample in samples:
        target = folder / sample.name
        if not all((target / name).is_file() for name in ["masks.npy", *(f"stage{s}.npy" for s in stages)]):
            item = cache.get(sample)
            stride = model.encoder.stride
            image, masks = pad_to_stride(item.image, stride), pad_to_stride(item.masks, stride, channels_first=True)
            target.mkdir(exist_ok=True)
            for stage, values in encoder_stages(model, image, stages).items():
                _save(target / f"stage{stage}.npy", values)
            _save(target / "masks.npy", masks)
        stored.append(open_stored(target, stages))
    return stored


def open_stored(target: Path, stages: tuple[int, ...]) -> StoredPhotograph:
    """A stored photograph's masks and ``stages`` (memory-mapped)."""
    stage_maps = {stage: np.load(target / f"stage{stage}.npy", mmap_mode="r") for stage in stages}
    return StoredPhotograph(target.name, np.load(target / "masks.npy"), stage_maps)


def _save(path: Path, values: np.ndarray) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.save(f, values)
