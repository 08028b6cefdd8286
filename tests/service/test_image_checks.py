"""The cheap looks before the decode: declared size, and whether a JPEG's data is whole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from service.decoding import decode_upload
from service.errors import ServiceError
from service.image_checks import check_jpeg_whole, declared_pixels, pixels_to_hold
from tests.service.helpers import jpeg_claiming, png


@pytest.fixture(scope="module")
def jpeg(small_rgb: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", small_rgb)[1].tobytes()


def test_a_small_jpeg_claiming_7000_by_7000_pixels_is_refused_as_truncated(jpeg: bytes):
    liar = jpeg_claiming(jpeg, 7000, 7000)
    assert len(liar) < 40_000 and declared_pixels(liar) == 49_000_000
    with pytest.raises(ServiceError) as refused:
        check_jpeg_whole(liar)
    assert refused.value.status == 400 and "truncated" in refused.value.detail
    with pytest.raises(ServiceError):
        decode_upload(liar, 50_000_000)
    check_jpeg_whole(jpeg)  # a whole one passes


def test_memory_is_reserved_for_the_declared_size_or_the_limit(jpeg: bytes, small_rgb: np.ndarray):
    assert pixels_to_hold(png(small_rgb), 10**6) == 120 * 80
    assert pixels_to_hold(jpeg_claiming(jpeg, 7000, 7000), 10**6) == 10**6  # never more than the limit
    assert pixels_to_hold(b"not an image header", 12345) == 12345  # unknown: the worst case
