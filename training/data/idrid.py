"""Reading IDRiD's segmentation part in its official folder layout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from model.config import RED_LESIONS
from model.formats.images import read_image

IMAGES_DIR = "A. Segmentation/1. Original Images"
MASKS_DIR = "A. Segmentation/2. All Segmentation Groundtruths"
LESION_DIRS = {"MA": "1. Microaneurysms", "HE": "2. Haemorrhages", "EX": "3. Hard Exudates", "SE": "4. Soft Exudates"}
SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}
DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "idrid"
IDRID_SOURCE = "https://idrid.grand-challenge.org/ (CC BY 4.0)"
"""Where IDRiD is downloaded from, and its licence."""

DEFAULT_HOLDOUT = tuple(f"IDRiD_{n:02d}" for n in range(5, 55, 5))
"""Every fifth training image (IDRiD_05, _10, ..., _50) is held out for validation."""

_NAME = re.compile(r"^IDRiD_\d+$")


class DatasetLayoutError(FileNotFoundError):
    """A data folder that is missing or not in IDRiD's official layout; the message says what was expected."""


def data_root(root: str | Path | None) -> Path:
    """A run config's ``data.root``, or the IDRiD folder beside the project when it names none."""
    return Path(root) if root else DEFAULT_ROOT


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    mask_paths: dict[str, Path | None]
    """Per lesion, in the model's output order, the mask file, or None where the image has no lesion of that kind."""


def split_dir(split: str) -> str:
    return SPLITS.get(split, split)


def list_samples(root: str | Path, split: str = "train", lesions: tuple[str, ...] = RED_LESIONS) -> list[Sample]:
    """The samples of one split, sorted by name, with the masks of ``lesions``. ``split`` is 'train', 'test' or a folder name."""
    root = Path(root)
    images = root / IMAGES_DIR / split_dir(split)
    if not images.is_dir():
        masks = f"{MASKS_DIR}/{split_dir(split)}/<lesion>/IDRiD_NN_<lesion>.tif"
        raise DatasetLayoutError(
            f"{images} not found: expected IDRiD's segmentation part in its official layout under {root}, "
            f"'{IMAGES_DIR}/{split_dir(split)}/IDRiD_NN.jpg' and '{masks}'; download IDRiD from {IDRID_SOURCE} "
            "and unpack it there, or name its folder (--data, or data.root in a run config)"
        )
    samples = []
    for image_path in sorted(images.glob("IDRiD_*.jpg")):
        name = image_path.stem
        if not _NAME.match(name):
            continue
        masks: dict[str, Path | None] = {}
        for lesion in lesions:
            path = root / MASKS_DIR / split_dir(split) / LESION_DIRS[lesion] / f"{name}_{lesion}.tif"
            masks[lesion] = path if path.is_file() else None
        if masks.get("MA", True) is None:
            raise DatasetLayoutError(f"{image_path} has no microaneurysm mask (expected {path.parent.parent / LESION_DIRS['MA'] / f'{name}_MA.tif'})")
        samples.append(Sample(name=name, image_path=image_path, mask_paths=masks))
    if not samples:
        raise DatasetLayoutError(f"no IDRiD_NN.jpg images in {images}")
    return samples


def split_holdout(samples: list[Sample], holdout: tuple[str, ...] | list[str] = DEFAULT_HOLDOUT) -> tuple[list[Sample], list[Sample]]:
    """(training, hold-out) samples; names in ``holdout`` that are not in ``samples`` are an error."""
    names = {s.name for s in samples}
    unknown = sorted(set(holdout) - names)
    if unknown:
        raise ValueError(f"hold-out names not in the data: {unknown}")
    held = set(holdout)
    return [s for s in samples if s.name not in held], [s for s in samples if s.name in held]


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A lesion mask as bool (H, W): any non-zero pixel is lesion; a missing mask is all False."""
    if path is None:
        return np.zeros(shape, dtype=bool)
    return read_mask_values(path, shape) > 0


def read_mask_values(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask file's values (H, W) (its largest channel, if it has several), checked against its photograph's shape."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetLayoutError(f"cannot read mask {path}")
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.shape != shape:
        raise DatasetLayoutError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but its photograph is {shape[1]}x{shape[0]}")
    return mask


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 image (H, W, 3), bool masks (C, H, W) in ``sample.mask_paths`` order) at full resolution."""
    image = read_image(sample.image_path)
    masks = np.stack([read_mask(path, image.shape[:2]) for path in sample.mask_paths.values()])
    return image, masks
