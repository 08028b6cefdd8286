"""Any labelled set of photographs: folders of photographs and, per lesion, a folder of masks matched by file stem.

A photograph ``DIR/.../NAME.ext`` takes the mask ``MASKS/.../NAME.ext'`` of each lesion's mask folder
(both searched recursively; any image extension). A photograph without a mask of a marked lesion
holds none of it (as e-ophtha's healthy photographs, or IDRiD_43's haemorrhages). Masks are binary
(any non-zero pixel is lesion) or, with an agreement, soft maps of several graders' markings: a pixel
is lesion where value / scale >= agreement (DiaRetDB1: scale 252, the protocol's agreement 0.75).
A field-of-view mask file, where given, limits the evaluated pixels of every photograph.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.config import ALL_LESIONS
from model.formats.images import read_image
from training.data.idrid import DatasetLayoutError, read_mask_values

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DEFAULT_AGREEMENT = 0.75
"""DiaRetDB1's protocol: a pixel is lesion where at least 75 % of the experts marked it."""
DIARETDB1_SCALE = 252.0
"""DiaRetDB1's soft maps: value / 252 is the share of experts who marked the pixel."""


@dataclass(frozen=True)
class Labelled:
    """A photograph with its ground truth: RGB uint8, per marked lesion a bool mask, the evaluated pixels."""

    image: np.ndarray
    truth: dict[str, np.ndarray]
    valid: np.ndarray | None = None
    marked: np.ndarray | None = None
    """Soft maps only: the pixels any grader marked as any of the set's lesions, at any agreement."""


@dataclass(frozen=True)
class MaskReading:
    agreement: float | None = None
    """None: binary masks (any non-zero pixel); else soft maps, lesion where value / scale >= agreement."""
    scale: float = DIARETDB1_SCALE

    def describe(self) -> str:
        if self.agreement is None:
            return "binary masks: any non-zero pixel is lesion"
        return f"soft maps: lesion where value / {self.scale:g} >= {self.agreement:g}"


@dataclass(frozen=True)
class FolderSample:
    name: str
    image_path: Path
    mask_paths: dict[str, Path | None]
    """Per marked lesion, the mask file, or None where the photograph holds none of the lesion."""
    reading: MaskReading = field(default_factory=MaskReading)
    fov_path: Path | None = None

    def load(self) -> Labelled:
        image = read_image(self.image_path)
        shape = image.shape[:2]
        valid = None if self.fov_path is None else read_lesion_mask(self.fov_path, shape, MaskReading())
        truth = {lesion: read_lesion_mask(path, shape, self.reading) for lesion, path in self.mask_paths.items()}
        if valid is not None:
            truth = {lesion: mask & valid for lesion, mask in truth.items()}
        marked = None
        if self.reading.agreement is not None:
            marked = np.zeros(shape, dtype=bool)
            for path in self.mask_paths.values():
                marked |= read_lesion_mask(path, shape, MaskReading())
        return Labelled(image, truth, valid, marked)


def read_lesion_mask(path: Path | None, shape: tuple[int, int], reading: MaskReading) -> np.ndarray:
    """A mask file as bool (H, W) read as ``reading`` says; a missing mask is all False."""
    if path is None:
        return np.zeros(shape, dtype=bool)
    mask = read_mask_values(path, shape)
    if reading.agreement is None:
        return mask > 0
    return mask.astype(np.float64) >= reading.agreement * reading.scale - 1e-9


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Every image file under ``folder`` (recursively) by its stem; two files with one stem are an error."""
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            raise DatasetLayoutError(f"two files named {path.stem} under {folder}: {found[path.stem]} and {path}")
        found[path.stem] = path
    return found


def list_folder_samples(
    photos: Sequence[Path],
    masks: Mapping[str, Path],
    reading: MaskReading = MaskReading(),
    fov_path: Path | None = None,
    names: Sequence[str] | None = None,
) -> list[FolderSample]:
    """The photographs under ``photos`` (sorted by name, or only ``names``) with their masks."""
    images: dict[str, Path] = {}
    for folder in photos:
        for stem, path in images_by_stem(Path(folder)).items():
            if stem in images:
                raise DatasetLayoutError(f"two photographs named {stem}: {images[stem]} and {path}")
            images[stem] = path
    if not images:
        raise DatasetLayoutError(f"no photographs ({', '.join(IMAGE_SUFFIXES)}) under {', '.join(map(str, photos))}")
    if fov_path is not None and not Path(fov_path).is_file():
        raise DatasetLayoutError(f"field-of-view mask {fov_path} not found")
    by_lesion = {lesion: images_by_stem(Path(folder)) for lesion, folder in masks.items()}
    for lesion, found in by_lesion.items():
        if not set(found) & set(images):
            raise DatasetLayoutError(f"no {lesion} mask under {masks[lesion]} is named as a photograph (matched by file stem)")
    if names:
        unknown = sorted(set(names) - set(images))
        if unknown:
            raise ValueError(f"photographs not in the data: {unknown}")
        images = {name: images[name] for name in names}
    return [
        FolderSample(stem, images[stem], {lesion: found.get(stem) for lesion, found in by_lesion.items()}, reading,
                     Path(fov_path) if fov_path is not None else None)
        for stem in sorted(images)
    ]


def parse_lesion_folder(text: str) -> tuple[str, Path]:
    """``MA=DIR`` as (lesion, folder), for ``--masks``."""
    lesion, sep, folder = text.partition("=")
    lesion = lesion.strip().upper()
    if not sep or lesion not in ALL_LESIONS or not folder:
        raise ValueError(f"--masks takes LESION=FOLDER with LESION one of {', '.join(ALL_LESIONS)}, got {text!r}")
    return lesion, Path(folder)


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The labelled-folder layout's options (``--photos`` selects it instead of IDRiD's)."""
    group = parser.add_argument_group("any labelled set (instead of IDRiD's layout)")
    group.add_argument("--photos", type=Path, action="append", metavar="DIR",
                       help="a folder of photographs, searched recursively (repeat for several)")
    group.add_argument("--masks", action="append", metavar="LESION=DIR", default=[],
                       help="a lesion's folder of masks matched to the photographs by file stem, e.g. MA=gt/redsmalldots; "
                            "repeat for HE; a photograph without a mask holds none of that lesion")
    group.add_argument("--agreement", type=float, nargs="?", const=DEFAULT_AGREEMENT, metavar="A",
                       help=f"the masks are soft maps: lesion where value / --agreement-scale >= A "
                            f"(A {DEFAULT_AGREEMENT:g} if omitted, DiaRetDB1's protocol); without it any non-zero pixel is lesion")
    group.add_argument("--agreement-scale", type=float, default=DIARETDB1_SCALE, metavar="V",
                       help=f"the soft maps' value for full agreement (default {DIARETDB1_SCALE:g}, DiaRetDB1's)")
    group.add_argument("--fov-mask", type=Path, metavar="FILE",
                       help="a field-of-view mask for every photograph: only its pixels are scored")
    group.add_argument("--name", help="the set's name in titles and metrics.json (default: the photographs' folder)")


def folder_samples(args: argparse.Namespace) -> list[FolderSample]:
    """The samples the labelled-folder options name (``--images`` picks photographs by stem)."""
    if getattr(args, "holdout", False):
        raise ValueError("--holdout is IDRiD's hold-out; with --photos pick photographs with --images NAME,...")
    if not args.masks:
        raise ValueError("--photos needs at least one --masks LESION=DIR")
    if args.agreement is not None and not 0 < args.agreement <= 1:
        raise ValueError(f"--agreement must be in (0, 1], got {args.agreement}")
    masks = dict(parse_lesion_folder(text) for text in args.masks)
    names = [n.strip() for n in args.images.split(",") if n.strip()] if args.images else None
    reading = MaskReading(args.agreement, args.agreement_scale)
    return list_folder_samples(args.photos, masks, reading, args.fov_mask, names)


def folder_name(args: argparse.Namespace) -> str:
    if args.name:
        return args.name
    first = Path(args.photos[0]).resolve()
    return f"{first.parent.name}/{first.name}"


def folder_header(args: argparse.Namespace, samples: Sequence[FolderSample]) -> dict:
    reading = samples[0].reading if samples else MaskReading()
    return {
        "data": {
            "layout": "labelled folder",
            "name": folder_name(args),
            "photos": [str(p) for p in args.photos],
            "masks": {lesion: str(folder) for lesion, folder in (parse_lesion_folder(t) for t in args.masks)},
            "mask_reading": reading.describe(),
            "agreement": reading.agreement,
            "fov_mask": str(args.fov_mask) if args.fov_mask else None,
            "selection": "images" if args.images else "all",
            "images": [s.name for s in samples],
        }
    }
