import cv2
import numpy as np

from model.rendering import (
    LESION_COLOURS,
    binary_mask,
    encode_png,
    lesion_stats,
    overlay,
    probability_to_uint16,
    uint16_to_probability,
)


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_binary_mask_is_0_or_255_at_the_threshold():
    p = np.array([[0.0, 0.49], [0.5, 1.0]], np.float32)
    assert binary_mask(p, 0.5).tolist() == [[0, 0], [255, 255]]
    assert binary_mask(p, 0.5).dtype == np.uint8


def test_probability_png_round_trip_is_16_bit_and_lossless():
    p = np.random.default_rng(0).random((31, 17)).astype(np.float32)
    values = probability_to_uint16(p)
    assert values.dtype == np.uint16 and values.max() <= 65535
    decoded = decode(encode_png(values))
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, values)
    np.testing.assert_allclose(uint16_to_probability(decoded), p, atol=0.5 / 65535 + 1e-7)
    assert probability_to_uint16(np.array([-1.0, 2.0])).tolist() == [0, 65535]


def test_rgb_png_keeps_channel_order():
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0] = 255
    assert tuple(decode(encode_png(rgb))[0, 0]) == (0, 0, 255)  # OpenCV decodes to BGR


def test_lesion_stats():
    mask = np.zeros((20, 20), np.uint8)
    mask[2:4, 2:4] = 255
    mask[10:15, 10:12] = 255
    stats = lesion_stats(mask)
    assert (stats.area_pixels, stats.components) == (14, 2)
    assert stats.area_fraction == 14 / 400
    assert lesion_stats(np.zeros((5, 5), np.uint8)).components == 0


def test_overlay_tints_lesions_and_leaves_the_rest():
    image = np.full((40, 40, 3), 60, np.uint8)
    ma = np.zeros((40, 40), np.uint8)
    ma[18:22, 18:22] = 255
    result = overlay(image, {"MA": ma, "HE": np.zeros_like(ma)})
    assert result.shape == image.shape and result.dtype == np.uint8
    assert np.array_equal(result[0:5, 0:5], image[0:5, 0:5])
    assert tuple(result[20, 20]) != (60, 60, 60)
    colour = np.array(LESION_COLOURS["MA"])
    assert np.abs(result[20, 20].astype(int) - colour).sum() < np.abs(image[20, 20].astype(int) - colour).sum()
    assert np.array_equal(image, np.full((40, 40, 3), 60, np.uint8))
