"""``redseg-segment``'s work once ``model.cli`` has parsed its arguments: each photograph on disk
to masks, 16-bit probability maps and an overlay (PNG), its DICOM SEG and SR where asked, a screening
line on stdout and a row of screening.csv."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from tqdm import tqdm

from model.backends import load_for_inference
from model.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError
from model.cli import EXIT_IMAGE_FAILED, EXIT_SETUP_FAILED, PROG, error
from model.config import ALL_LESIONS
from model.devices import resolve_device
from model.formats.dicom import is_dicom, read_dicom, to_bytes
from model.formats.dicom_seg import segmentation
from model.formats.dicom_sr import structured_report
from model.formats.images import ImageDecodeError, decode_image, read_bytes
from model.formats.png import encode_png
from model.input_check import UNFIT, admit_photograph
from model.inference import TileSettings, predict_probabilities
from model.screening.masks import LesionStats, lesion_masks
from model.screening.overlay import overlay
from model.screening.summary import ScreeningSummary, csv_fields, csv_row, one_line, summarise
from model.tta import resolve_tta


def run(args: argparse.Namespace) -> int:
    """Segment ``args.images`` into ``args.out``; the exit status (0, or ``EXIT_*`` of ``model.cli``)."""
    try:
        device = resolve_device(args.device)
        settings = TileSettings(tile_size=args.tile_size, fov_mask=not args.no_fov_mask, precision=args.precision,
                                tta=resolve_tta(args.tta, device.type == "cuda"))
        checkpoint = load_for_inference(args.checkpoint or DEFAULT_CHECKPOINT, device, args.backend)
        thresholds = mask_thresholds(args, checkpoint.thresholds)
        args.out.mkdir(parents=True, exist_ok=True)
    except (CheckpointError, RuntimeError, ValueError, OSError) as exc:
        error(str(exc))
        return EXIT_SETUP_FAILED
    failed = 0
    # disable=None: no bar where stderr is not a terminal, so logs get whole lines without carriage returns
    bar = tqdm(args.images, desc=PROG, unit="image", file=sys.stderr, disable=True if args.no_progress else None)
    with ScreeningTable(args.out / "screening.csv") as table:
        for path in bar:
            try:
                stats, screening = segment_one(path, args.out, checkpoint, settings, thresholds, args.dicom_seg,
                                               args.dicom_sr, fundus_check=not args.no_fundus_check)
            except (ImageDecodeError, *UNFIT, OSError) as exc:
                message = " ".join(str(exc).split())
                error(message if str(path) in message else f"{path}: {message}")
                failed += 1
                continue
            tqdm.write(summary(path, args.out, stats, screening), file=sys.stdout)
            table.write(path.name, screening)
    if failed:
        error(f"{failed} of {len(args.images)} images failed")
        return EXIT_IMAGE_FAILED
    return 0


def mask_thresholds(args: argparse.Namespace, operating: dict[str, float]) -> dict[str, float]:
    """The masks' threshold per lesion the model segments: ``--threshold-<lesion>``, else the operating one."""
    thresholds = dict(operating)
    for lesion in ALL_LESIONS:
        override = getattr(args, f"threshold_{lesion.lower()}")
        if override is None:
            continue
        if lesion not in thresholds:
            raise ValueError(f"--threshold-{lesion.lower()}: the model does not segment {lesion} "
                             f"(it segments {', '.join(thresholds)})")
        thresholds[lesion] = override
    return thresholds


def read_input(path: Path, dicom_seg: str | None, dicom_sr: bool = False) -> tuple[np.ndarray, Dataset | None]:
    """RGB pixels, and the parsed DICOM file for a DICOM input."""
    data = read_bytes(path)
    if is_dicom(data):
        photo = read_dicom(data)
        return photo.pixels, photo.dataset
    if dicom_seg or dicom_sr:
        flag = "--dicom-seg" if dicom_seg else "--dicom-sr"
        raise ImageDecodeError(f"{path}: {flag} needs a DICOM photograph to refer to, and this is not DICOM")
    return decode_image(data), None


def segment_one(
    path: Path,
    out: Path,
    checkpoint: Checkpoint,
    settings: TileSettings,
    thresholds: dict[str, float],
    dicom_seg: str | None = None,
    dicom_sr: bool = False,
    fundus_check: bool = True,
) -> tuple[dict[str, LesionStats], ScreeningSummary]:
    """Write the image's masks and 16-bit probability maps (each lesion the model segments) and overlay (and its DICOM SEG with ``dicom_seg``, its SEG
    and SR with ``dicom_sr``); return each lesion's statistics and the screening summary."""
    image, source = read_input(path, dicom_seg, dicom_sr)
    mapping = admit_photograph(image, checkpoint.config, fundus_check)
    probabilities = predict_probabilities(checkpoint.model, image, settings, checkpoint.calibration, mapping)
    masks = lesion_masks(probabilities, thresholds)
    for lesion in masks.masks:
        (out / f"{path.stem}_{lesion}_mask.png").write_bytes(encode_png(masks.masks[lesion]))
        (out / f"{path.stem}_{lesion}_prob.png").write_bytes(encode_png(masks.levels[lesion]))
    (out / f"{path.stem}_overlay.png").write_bytes(encode_png(overlay(image, masks.masks)))
    screening = summarise(image, probabilities, checkpoint, masks, mapping.disc)
    if dicom_seg or dicom_sr:
        write_dicom(out / path.stem, source, probabilities, thresholds, dicom_seg or "binary", checkpoint,
                    screening if dicom_sr else None)
    return masks.stats(), screening


def write_dicom(
    stem: Path,
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    checkpoint: Checkpoint,
    screening: ScreeningSummary | None,
) -> None:
    """``<stem>_seg.dcm``, and with ``screening`` ``<stem>_sr.dcm``: the summary as an SR referencing the SEG."""
    seg = segmentation(source, probabilities, thresholds, seg_type, checkpoint.name, checkpoint.version)
    stem.with_name(f"{stem.name}_seg.dcm").write_bytes(to_bytes(seg))
    if screening is not None:  # counted at the checkpoint's thresholds, whatever the masks' are
        sr = structured_report(source, seg, screening, dict(checkpoint.thresholds), checkpoint.name, checkpoint.version)
        stem.with_name(f"{stem.name}_sr.dcm").write_bytes(to_bytes(sr))


def summary(path: Path, out: Path, stats: dict[str, LesionStats], screening: ScreeningSummary) -> str:
    """One line per segmented image: ``a.jpg: MA 310 px in 41 regions, HE 48210 px in 12 regions; <screening> -> out/a_*.png``."""
    parts = [f"{lesion} {s.area_pixels} px in {s.components} region{'' if s.components == 1 else 's'}" for lesion, s in stats.items()]
    return f"{path}: {', '.join(parts)}; {one_line(screening)} -> {out / path.stem}_*.png"


class ScreeningTable:
    """screening.csv, one row per segmented image of this run: one from an earlier run is removed, and the
    file is made with the first row, so a run whose every image fails leaves none."""

    def __init__(self, path: Path):
        path.unlink(missing_ok=True)
        self.path = path
        self._file = None
        self._rows: csv.DictWriter | None = None

    def write(self, image: str, screening: ScreeningSummary) -> None:
        if self._rows is None:
            self._file = self.path.open("w", newline="")
            self._rows = csv.DictWriter(self._file, csv_fields(screening.lesions))
            self._rows.writeheader()
        self._rows.writerow(csv_row(image, screening))
        self._file.flush()

    def __enter__(self) -> ScreeningTable:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._file is not None:
            self._file.close()
