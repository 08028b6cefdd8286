"""DICOM Part 10 fundus photographs in: which kinds are accepted, their checks, and their pixels as RGB uint8.

Everything is read from bytes in memory. The pixel count is checked from Rows x Columns
before any pixel data is decoded. Error messages name what a file is (its SOP class,
transfer syntax or photometric interpretation), never a patient attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pydicom
from pydicom import config, uid
from pydicom.dataset import Dataset

from model.formats.images import ImageDecodeError

# Invalid attribute values are kept as they are and not warned about: pydicom's
# warnings quote the values, and those may be a patient's name or birth date.
config.settings.reading_validation_mode = config.IGNORE

PHOTOGRAPH_SOP_CLASSES = (uid.OphthalmicPhotography8BitImageStorage, uid.VLPhotographicImageStorage)
TRANSFER_SYNTAXES = (uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.JPEGBaseline8Bit, uid.RLELossless)
"""Those decoded by pydicom itself (uncompressed, RLE) or through Pillow (JPEG baseline)."""
PHOTOMETRIC_INTERPRETATIONS = ("RGB", "YBR_FULL", "YBR_FULL_422", "MONOCHROME2")


class DicomUnsupported(ImageDecodeError):
    """A valid DICOM file that is not a photograph RedSeg can read (the service answers 415)."""


class DicomCorrupt(ImageDecodeError):
    """Not parseable, truncated, or missing what a photograph needs (400)."""


class DicomTooLarge(ImageDecodeError):
    """More pixels than allowed, known from Rows x Columns before decoding (413)."""


@dataclass(frozen=True)
class DicomPhoto:
    dataset: Dataset
    """The parsed file, kept to reference it (and copy its patient and study) in a DICOM SEG."""
    pixels: np.ndarray
    """RGB uint8 (Rows, Columns, 3)."""


def is_dicom(data: bytes) -> bool:
    """A DICOM Part 10 file: a 128-byte preamble, then 'DICM'."""
    return data[128:132] == b"DICM"


def read_dicom(data: bytes, max_pixels: int | None = None) -> DicomPhoto:
    """Parse, check and decode a DICOM photograph, or raise DicomUnsupported/DicomCorrupt/DicomTooLarge."""
    try:
        dataset = pydicom.dcmread(BytesIO(data))
        check_photograph(dataset)
        check_pixel_count(dataset, max_pixels)
        return DicomPhoto(dataset, decode_pixels(dataset))
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is a corrupt file
        raise DicomCorrupt(f"the DICOM file could not be read (corrupt or truncated: {type(exc).__name__})") from None


def _uid_name(value: object) -> str:
    name = uid.UID(str(value)).name
    return f"{name} ({value})" if name != str(value) else str(value)


def check_photograph(dataset: Dataset) -> None:
    sop_class = dataset.get("SOPClassUID")
    if not sop_class:
        raise DicomCorrupt("the DICOM file has no SOP Class UID (truncated, or not a DICOM object)")
    if sop_class not in PHOTOGRAPH_SOP_CLASSES:
        raise DicomUnsupported(
            f"the DICOM file is a {_uid_name(sop_class)} object, not a photograph RedSeg reads: send "
            "Ophthalmic Photography 8 Bit Image Storage or VL Photographic Image Storage"
        )
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax not in TRANSFER_SYNTAXES:
        names = ", ".join(uid.UID(s).name for s in TRANSFER_SYNTAXES)
        raise DicomUnsupported(f"unsupported DICOM transfer syntax {_uid_name(syntax)}: send one of {names}")
    if "PixelData" not in dataset:
        raise DicomCorrupt("the DICOM photograph has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in PHOTOMETRIC_INTERPRETATIONS:
        raise DicomUnsupported(
            f"unsupported photometric interpretation {photometric or '(none)'}: send "
            f"{', '.join(PHOTOMETRIC_INTERPRETATIONS)}"
        )
    if int(dataset.get("BitsAllocated", 0)) != 8:
        raise DicomUnsupported(f"the DICOM photograph has {dataset.get('BitsAllocated')} bits allocated; RedSeg reads 8")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise DicomUnsupported(f"the DICOM object has {frames} frames: send one photograph per file")


def check_pixel_count(dataset: Dataset, max_pixels: int | None) -> None:
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    if rows < 1 or columns < 1:
        raise DicomCorrupt(f"the DICOM photograph declares {columns}x{rows} pixels")
    if max_pixels is not None and rows * columns > max_pixels:
        raise DicomTooLarge(f"the image has {columns}x{rows} pixels; the limit is {max_pixels}")


def decode_pixels(dataset: Dataset) -> np.ndarray:
    """RGB uint8: YBR converted to RGB, grey repeated over three channels."""
    pixels = dataset.pixel_array  # pydicom converts YBR_FULL(_422) to RGB
    if pixels.shape[:2] != (dataset.Rows, dataset.Columns):
        raise DicomCorrupt(f"the DICOM pixel data has shape {pixels.shape}, not {dataset.Columns}x{dataset.Rows}")
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def to_bytes(dataset: Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file (preamble, file meta, dataset)."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
