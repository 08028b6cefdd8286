"""Turning untrusted upload bytes into an RGB uint8 image, or a precise client error.

The data is decoded from memory (never written to disk). Only the four formats of
the service contract and DICOM photographs (service/dicom.py) reach a decoder;
OpenCV's own pixel limits (set in ``service/__init__``) stop decompression bombs
before they allocate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from model.formats.dicom import is_dicom
from model.formats.images import ImageDecodeError, ImageTooLargeError, decode_raw, to_rgb8
from service.dicom import decode_dicom
from service.errors import ServiceError
from service.image_checks import check_jpeg_whole

SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
    "tiff": (b"II*\x00", b"MM\x00*"),
    "bmp": (b"BM",),
}

ACCEPTED_CONTENT_TYPES = ("image/", "application/octet-stream", "application/dicom")


def image_format(data: bytes) -> str | None:
    return next((fmt for fmt, magics in SIGNATURES.items() if data.startswith(magics)), None)


def check_content_type(content_type: str | None) -> None:
    """Refuse a part whose declared type says it is not an image (a missing type is fine)."""
    if content_type and not content_type.lower().startswith(ACCEPTED_CONTENT_TYPES):
        raise ServiceError(415, "unsupported_type", f"unsupported content type {content_type!r}: send a JPEG, PNG, TIFF or BMP image, or a DICOM photograph")


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode ``data`` to RGB uint8 (H, W, 3), or raise a ServiceError."""
    if not data:
        raise ServiceError(400, "empty", "the uploaded image is empty")
    fmt = image_format(data)
    if fmt is None:
        raise ServiceError(415, "not_an_image", "the upload is not a JPEG, PNG, TIFF or BMP image, nor a DICOM file")
    if fmt == "jpeg":
        check_jpeg_whole(data)
    try:
        decoded = decode_raw(data)
    except ImageTooLargeError:
        raise ServiceError(413, "too_many_pixels", f"the image has too many pixels (limit {max_pixels})") from None
    except ImageDecodeError:
        raise ServiceError(400, "corrupt", f"the {fmt.upper()} could not be decoded (corrupt or truncated)") from None
    height, width = decoded.shape[:2]
    if height * width > max_pixels:
        raise ServiceError(413, "too_many_pixels", f"the image has {width}x{height} pixels; the limit is {max_pixels}")
    try:
        return to_rgb8(decoded)
    except ImageDecodeError as exc:
        raise ServiceError(415, "unsupported_type", str(exc)) from None


@dataclass(frozen=True)
class Photo:
    pixels: np.ndarray
    """RGB uint8 (H, W, 3)."""
    dicom: Dataset | None = None
    """The parsed DICOM file, for a DICOM upload (a DICOM SEG answer refers to it)."""


def decode_photo(data: bytes, max_pixels: int) -> Photo:
    """A DICOM photograph or a JPEG/PNG/TIFF/BMP image, or a ServiceError."""
    if is_dicom(data):
        dicom = decode_dicom(data, max_pixels)
        return Photo(dicom.pixels, dicom.dataset)
    return Photo(decode_upload(data, max_pixels))
