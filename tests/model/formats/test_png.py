"""The grey PNG writer: lossless for 8- and 16-bit maps of any shape, read back by two independent decoders."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from model.formats.png import grey_png


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (31, 17), (64, 300)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_random_maps_round_trip_through_opencv_and_pillow(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    values = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)
    data = grey_png(values)
    from_opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert from_opencv.dtype == dtype and np.array_equal(from_opencv.reshape(shape), values)
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # checks every chunk's CRC and the deflate stream
        assert image.size == shape[::-1]
        assert np.array_equal(np.asarray(image).astype(dtype).reshape(shape), values)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_every_compression_level_is_lossless_and_a_mostly_empty_mask_is_small(level):
    mask = np.zeros((2848, 4288), np.uint8)
    mask[1000:1010, 2000:2030] = 255
    data = grey_png(mask, level)
    assert len(data) < 200_000
    assert np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), mask)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.float32), np.zeros((0, 4), np.uint8)])
def test_anything_but_a_non_empty_grey_map_is_refused(bad):
    with pytest.raises(ValueError, match="2-D uint8 or uint16"):
        grey_png(bad)
