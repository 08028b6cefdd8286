"""The DICOM answers that carry the screening summary: the SEG and its SR together (HTTP multipart/related, and
what the DICOM node stores to the PACS)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from model.checkpoint import Checkpoint
from model.formats.dicom import to_bytes
from model.formats.dicom_seg import segmentation
from model.formats.dicom_sr import structured_report
from model.screening.summary import ScreeningSummary
from service.dicom import segmentation_bytes
from service.errors import ServiceError
from service.responses import AnswerFormat


def seg_and_sr(
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    checkpoint: Checkpoint,
    summary: ScreeningSummary,
) -> list[bytes]:
    """The SEG of ``source`` and the SR of its ``summary`` (counted at the checkpoint's thresholds), as files;
    a source whose attributes DICOM cannot carry over is a 400."""
    try:
        seg = segmentation(source, probabilities, thresholds, seg_type, checkpoint.name, checkpoint.version)
        sr = structured_report(source, seg, summary, dict(checkpoint.thresholds), checkpoint.name, checkpoint.version)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ServiceError(400, "unsupported_dicom", f"no DICOM SEG and SR can be made for this photograph: {exc}") from None
    return [to_bytes(seg), to_bytes(sr)]


def dicom_parts(
    fmt: AnswerFormat,
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    checkpoint: Checkpoint,
    summary: ScreeningSummary,
) -> list[bytes]:
    """The DICOM answer's files: the SEG alone (application/dicom), or the SEG and the SR (multipart/related)."""
    if fmt is AnswerFormat.DICOM:
        return [segmentation_bytes(source, probabilities, thresholds, seg_type, checkpoint)]
    return seg_and_sr(source, probabilities, thresholds, seg_type, checkpoint, summary)
