"""Reading fundus photographs into RGB uint8 arrays, from files or from bytes in memory."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

# Keep bit depth and grey/colour, drop alpha, and apply the EXIF orientation
# (IMREAD_UNCHANGED would ignore it).
DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


class ImageDecodeError(ValueError):
    pass


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than OpenCV's decoder limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) allows."""


def to_rgb8(decoded: np.ndarray) -> np.ndarray:
    """An OpenCV-decoded array (grey or BGR(A), 8 or 16 bit, or float) as RGB uint8 (H, W, 3)."""
    image = decoded
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageDecodeError(f"unsupported image shape {image.shape}")


def decode_raw(data: bytes) -> np.ndarray:
    """Decode an encoded image held in memory as OpenCV reads it (grey or BGR(A), 8 or 16 bit)."""
    if not data:
        raise ImageDecodeError("empty image data")
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), DECODE_FLAGS)
    except cv2.error as exc:
        message = str(exc.err or exc)
        if "CV_IO_MAX_IMAGE" in message:
            raise ImageTooLargeError(f"the image has too many pixels: {message}") from exc
        raise ImageDecodeError(f"the image could not be decoded: {message}") from exc
    if decoded is None or decoded.size == 0:
        raise ImageDecodeError("the data is not a decodable image (corrupt, truncated or unsupported format)")
    return decoded


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, TIFF, BMP, ...) held in memory to RGB uint8."""
    return to_rgb8(decode_raw(data))


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes; an unreadable file is an ``ImageDecodeError`` that names it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8."""
    return decode_image(read_bytes(path))
