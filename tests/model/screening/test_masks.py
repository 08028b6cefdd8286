import cv2
import numpy as np

from model.config import ALL_LESIONS
from model.formats.png import encode_png
from model.screening.masks import (
    binary_mask,
    lesion_stats,
    mask_from_levels,
    probability_to_uint16,
    threshold_level,
    uint16_to_probability,
)
from model.screening.overlay import LESION_COLOURS, OVERLAY_ORDER, overlay


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_binary_mask_is_0_or_255_at_the_threshold():
    p = np.array([[0.0, 0.49], [0.5, 1.0]], np.float32)
    assert binary_mask(p, 0.5).tolist() == [[0, 0], [255, 255]]
    assert binary_mask(p, 0.5).dtype == np.uint8


def test_mask_is_exactly_the_saved_16_bit_map_thresholded():
    rng = np.random.default_rng(1)
    # probabilities crowding each threshold, on both sides of it and of the levels next to it
    for threshold in (0.5, 0.3, 0.42, 1 / 3, 12345 / 65535, 0.0, 1.0, float(rng.random())):
        p = np.clip(threshold + rng.uniform(-3 / 65535, 3 / 65535, 20_000), 0, 1).astype(np.float32)
        levels = decode(encode_png(probability_to_uint16(p)[None]))[0]
        from_map = levels / 65535 >= threshold
        np.testing.assert_array_equal(binary_mask(p, threshold) == 255, from_map)
        np.testing.assert_array_equal(mask_from_levels(levels, threshold) == 255, from_map)
        assert from_map.any() or threshold == 1.0


def test_threshold_level_is_the_least_level_reaching_the_threshold():
    assert threshold_level(0.0) == 0
    assert threshold_level(1.0) == 65535
    assert threshold_level(0.5) == 32768  # 32767 / 65535 < 0.5 <= 32768 / 65535
    assert threshold_level(100 / 65535) == 100
    assert threshold_level(np.nextafter(100 / 65535, 1)) == 101


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


def test_overlay_draws_ma_over_he_where_they_coincide():
    assert sorted(OVERLAY_ORDER) == sorted(ALL_LESIONS) and OVERLAY_ORDER[-1] == "MA"
    image = np.full((60, 60, 3), 60, np.uint8)
    he = np.zeros((60, 60), np.uint8)
    he[10:50, 10:50] = 255
    ma = np.zeros_like(he)
    ma[25:35, 25:35] = 255
    both = overlay(image, {"MA": ma, "HE": he})
    alone = {lesion: overlay(image, {lesion: mask}) for lesion, mask in (("MA", ma), ("HE", he))}
    assert np.array_equal(both[30, 30], alone["MA"][30, 30])  # inside both: MA's tint of the photo
    assert not np.array_equal(both[30, 30], alone["HE"][30, 30])
    assert np.array_equal(both[15, 15], alone["HE"][15, 15])  # HE only: HE's tint
    assert tuple(both[25, 30]) == LESION_COLOURS["MA"]  # MA's outline on top


def test_overlay_draws_exudates_in_colours_of_their_own():
    assert LESION_COLOURS["MA"] == (255, 255, 0) and LESION_COLOURS["HE"] == (0, 255, 255)
    assert sorted(LESION_COLOURS) == sorted(ALL_LESIONS) and len(set(LESION_COLOURS.values())) == len(ALL_LESIONS)
    image = np.full((60, 60, 3), 60, np.uint8)
    masks = {lesion: np.zeros((60, 60), np.uint8) for lesion in ALL_LESIONS}
    masks["EX"][10:20, 10:20] = 255
    masks["SE"][35:50, 35:50] = 255
    result = overlay(image, masks)
    for lesion, inside, edge in (("EX", (15, 15), (10, 15)), ("SE", (42, 42), (35, 42))):
        tint = (image[inside] * 0.55 + np.array(LESION_COLOURS[lesion]) * 0.45).astype(np.uint8)
        assert tuple(result[inside]) == tuple(tint) and tuple(result[edge]) == LESION_COLOURS[lesion]
    assert np.array_equal(overlay(image, {"MA": masks["MA"], "HE": masks["HE"]}), image)
