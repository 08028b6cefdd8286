"""Other cameras' effects on a training patch (training.data.camera), checked on patches with known answers."""

import numpy as np
import pytest

from training.data.camera import camera_effects, jpeg_round_trip, lower_resolution, sensor_response
from training.data.dataset import AugmentConfig


def _checkerboard(size=64, square=2) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    grey = (((yy // square) + (xx // square)) % 2 * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def test_a_lower_resolution_loses_the_fine_pattern_and_keeps_the_shape():
    board = _checkerboard()
    assert np.array_equal(lower_resolution(board, 1.0), board)
    coarse = lower_resolution(board, 0.25)
    assert coarse.shape == board.shape and coarse.dtype == np.uint8
    assert coarse.std() < 0.2 * board.std()  # 2-pixel squares cannot survive a quarter of the resolution


def test_white_balance_scales_each_channel_and_saturates_at_white():
    image = np.full((8, 8, 3), 100, np.uint8)
    image[0, 0] = 200
    out = sensor_response(image, np.array([1.5, 1.0, 0.5]), 0.0, np.zeros(2))
    assert tuple(out[4, 4]) == (150, 100, 50)
    assert tuple(out[0, 0]) == (255, 200, 100)


def test_the_illumination_falls_away_from_its_centre():
    image = np.full((41, 41, 3), 200, np.uint8)
    out = sensor_response(image, np.ones(3), 0.5, np.zeros(2)).astype(int)
    assert out[20, 20, 0] == 200
    assert out[0, 0, 0] < out[0, 20, 0] < out[20, 20, 0]  # a corner is half a diagonal away: 1 - 0.5 / 4
    assert out[0, 0, 0] == round(200 * (1 - 0.5 * 0.25))


def test_a_jpeg_round_trip_costs_more_at_a_lower_quality():
    rng = np.random.default_rng(0)
    image = np.clip(128 + rng.normal(0, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
    errors = [np.abs(jpeg_round_trip(image, q).astype(int) - image).mean() for q in (95, 30)]
    assert 0 < errors[0] < errors[1]
    assert jpeg_round_trip(image, 50).shape == image.shape


def test_nothing_switched_on_changes_nothing():
    image = _checkerboard()
    for index in range(10):
        out = camera_effects(np.random.default_rng(index), image, AugmentConfig())
        assert np.array_equal(out, image)


def test_every_step_switched_on_changes_some_patches_and_leaves_others():
    image = _checkerboard(square=4)
    augment = AugmentConfig(resolution=0.5, blur=1.5, white_balance=0.2, vignetting=0.3, jpeg_quality=40)
    changed = [not np.array_equal(camera_effects(np.random.default_rng(i), image, augment), image) for i in range(40)]
    assert 30 < sum(changed) < 40  # each step on half the patches: 1/32 of them untouched


@pytest.mark.parametrize("field,value", [("resolution", 1.0), ("blur", -1), ("white_balance", 1.5),
                                         ("vignetting", 2), ("jpeg_quality", 0)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})
