"""Cheap looks at an upload before the full decode: its declared size, and whether a JPEG's data is whole.

OpenCV's JPEG decoder only warns (on stderr) when the data ends early and fills the
missing part with grey, so a 31 KB file claiming 7000x7000 pixels would decode to
150 MB of nothing. A strict libjpeg-turbo pass at 1/8 scale (simplejpeg) reads every
entropy-coded byte but skips most of the pixel work, and says when data is missing.
"""

from __future__ import annotations

import io
import warnings

import simplejpeg
from PIL import Image

from service.errors import ServiceError

MISSING_DATA_WARNINGS = ("premature end",)
"""libjpeg's warnings for data that ends early (JWRN_JPEG_EOF, JWRN_HIT_MARKER); other warnings
(extraneous bytes, which some cameras write) leave the decision to the decoder."""

_SIMPLEJPEG_COLORSPACE = {"Gray": "GRAY", "CMYK": "CMYK", "YCCK": "CMYK"}


def declared_pixels(data: bytes) -> int | None:
    """Width x height from the image's header (no pixels decoded), or None if Pillow cannot read it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Exception:  # any header Pillow cannot parse: the decoder gives the verdict
        return None
    return width * height


def pixels_to_hold(data: bytes, max_pixels: int) -> int:
    """The pixels to reserve memory for before decoding: the declared size, or the limit if unknown."""
    return min(declared_pixels(data) or max_pixels, max_pixels)


def _jpeg_has_end_marker(data: bytes) -> bool:
    # The end-of-image marker must follow the last start-of-scan; entropy-coded data
    # never contains FF D9 (FF is byte-stuffed), so this spots a scan cut short.
    return data.rfind(b"\xff\xd9") > data.rfind(b"\xff\xda")


def check_jpeg_whole(data: bytes) -> None:
    """Raise a 400 ServiceError if the JPEG's data ends before its image does."""
    if not _jpeg_has_end_marker(data):
        raise ServiceError(400, "corrupt", "the JPEG is truncated (no end-of-image marker)")
    try:
        _, _, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        simplejpeg.decode_jpeg(data, colorspace=_SIMPLEJPEG_COLORSPACE.get(colorspace, "GRAY"), min_factor=8, strict=True)
    except ValueError as exc:
        if any(warning in str(exc).lower() for warning in MISSING_DATA_WARNINGS):
            raise ServiceError(400, "corrupt", "the JPEG is truncated (its data ends before the image does)") from None
