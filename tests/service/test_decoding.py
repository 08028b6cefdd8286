"""Safe decoding of upload bytes: formats, depths, channels, EXIF orientation, limits."""

from __future__ import annotations

import os
import struct

import cv2
import numpy as np
import pytest

from service.decoding import decode_upload, image_format
from service.errors import ServiceError
from tests.service.helpers import png


def test_opencv_limits_are_set_in_the_environment():
    assert int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"]) <= 50_000_000
    assert os.environ["OPENCV_IO_ENABLE_OPENEXR"] == "0"


def test_formats_are_recognised_by_their_signature():
    assert image_format(b"\xff\xd8\xff\xe0") == "jpeg"
    assert image_format(b"\x89PNG\r\n\x1a\n") == "png"
    assert image_format(b"II*\x00") == image_format(b"MM\x00*") == "tiff"
    assert image_format(b"BM") == "bmp"
    assert image_format(b"GIF89a") is None and image_format(b"") is None


@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgb16", "rgba8", "rgba16"])
def test_depths_and_channels_become_rgb8(kind: str):
    rgb = np.zeros((6, 9, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    arrays = {
        "grey8": np.full((6, 9), 77, np.uint8),
        "grey16": np.full((6, 9), 77 * 257, np.uint16),
        "rgb16": rgb.astype(np.uint16) * 257,
        "rgba8": np.dstack([rgb, np.full((6, 9), 10, np.uint8)]),
        "rgba16": np.dstack([rgb, np.full((6, 9), 10, np.uint8)]).astype(np.uint16) * 257,
    }
    image = decode_upload(png(arrays[kind]), max_pixels=1000)
    assert image.shape == (6, 9, 3) and image.dtype == np.uint8
    expected = [77, 77, 77] if kind.startswith("grey") else [200, 100, 50]
    assert image[0, 0].tolist() == expected


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    app1 = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_exif_orientation_is_applied():
    ok, jpeg = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))
    rotated = decode_upload(with_exif_orientation(jpeg.tobytes(), 6), max_pixels=10_000)
    assert rotated.shape == (40, 20, 3)


@pytest.mark.parametrize(
    "data, status",
    [(b"", 400), (b"BMxx", 400), (b"\x89PNG\r\n\x1a\nxx", 400), (b"%PDF", 415), (b"\xff\xd8\xff\xe0\x00\x10JFIF", 400)],
    ids=["empty", "broken BMP", "broken PNG", "PDF", "JPEG without end marker"],
)
def test_bad_bytes_raise_the_right_status(data: bytes, status: int):
    with pytest.raises(ServiceError) as error:
        decode_upload(data, max_pixels=10_000)
    assert error.value.status == status


def test_pixel_limit():
    data = png(np.zeros((100, 101), np.uint8))
    assert decode_upload(data, max_pixels=10_100).shape == (100, 101, 3)
    with pytest.raises(ServiceError) as error:
        decode_upload(data, max_pixels=10_099)
    assert error.value.status == 413 and "101x100" in error.value.detail
