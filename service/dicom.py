"""DICOM for the service: an uploaded DICOM photograph in (with its client errors), a DICOM SEG (and SR) out."""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset

from model.checkpoint import Checkpoint
from model.formats.dicom import DicomCorrupt, DicomPhoto, DicomTooLarge, DicomUnsupported, read_dicom, to_bytes
from model.formats.dicom_seg import segmentation
from model.formats.dicom_sr import structured_report
from model.screening.summary import ScreeningSummary
from service.errors import ServiceError

# highdicom logs every module it copies into a SEG at INFO; the service's log is for requests.
logging.getLogger("highdicom").setLevel(logging.WARNING)

_STATUS = {DicomUnsupported: (415, "unsupported_dicom"), DicomCorrupt: (400, "corrupt"), DicomTooLarge: (413, "too_many_pixels")}


def decode_dicom(data: bytes, max_pixels: int) -> DicomPhoto:
    """The photograph of a DICOM upload, or a ServiceError: 415 unsupported, 400 corrupt, 413 too many pixels."""
    try:
        return read_dicom(data, max_pixels)
    except (DicomUnsupported, DicomCorrupt, DicomTooLarge) as exc:
        status, reason = _STATUS[type(exc)]
        raise ServiceError(status, reason, str(exc)) from None


def require_dicom_source(source: Dataset | None) -> Dataset:
    """A DICOM answer refers to its source photograph: a PNG or JPEG upload cannot have one (406)."""
    if source is None:
        raise ServiceError(
            406, "not_acceptable", "a DICOM SEG answer needs a DICOM upload to refer to: send the photograph as DICOM, "
            "or accept application/json or application/zip"
        )
    return source


def dicom_files(
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    checkpoint: Checkpoint,
    summary: ScreeningSummary | None = None,
) -> list[bytes]:
    """The DICOM SEG file of ``source`` (a segment per lesion of ``thresholds``: the model's, in its order), and with a
    ``summary`` the SR of it (counted at the checkpoint's thresholds) after it; a source whose attributes DICOM cannot
    carry over is a 400."""
    made = "SEG" if summary is None else "SEG and SR"
    try:
        seg = segmentation(source, probabilities, thresholds, seg_type, checkpoint.name, checkpoint.version)
        files = [seg]
        if summary is not None:
            files.append(structured_report(source, seg, summary, dict(checkpoint.thresholds), checkpoint.name,
                                           checkpoint.version))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ServiceError(400, "unsupported_dicom", f"no DICOM {made} can be made for this photograph: {exc}") from None
    return [to_bytes(dataset) for dataset in files]
