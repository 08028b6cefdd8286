import numpy as np
import pytest
import torch

from model.inference import TileSettings, predict_probabilities, tile_count
from model.tta import TTA_MODES, augmented, resolve_tta

from tests.model.conftest import fundus_like, tiny_model


def per_pixel(image: torch.Tensor) -> torch.Tensor:
    """A predictor that commutes with every flip and rotation."""
    return torch.sigmoid(image[0, :2])


@pytest.mark.parametrize("mode", sorted(TTA_MODES))
def test_views_are_undone_before_averaging(mode):
    image = torch.randn(1, 3, 12, 20)
    assert torch.allclose(augmented(per_pixel, image, mode), per_pixel(image), atol=1e-6)


def test_flips_average_out_a_left_right_bias():
    def leftward(image: torch.Tensor) -> torch.Tensor:
        return torch.linspace(0, 1, image.shape[-1]).expand(2, *image.shape[-2:])

    image = torch.zeros(1, 3, 6, 9)
    assert torch.allclose(augmented(leftward, image, "hflip"), torch.full((2, 6, 9), 0.5), atol=1e-6)
    assert torch.allclose(augmented(leftward, image, "none"), leftward(image))


def test_tta_is_a_checked_setting_and_multiplies_the_tiles():
    with pytest.raises(ValueError, match="tta"):
        TileSettings(tta="mirror")
    model = tiny_model()
    settings = {mode: TileSettings(tile_size=128, tta=mode) for mode in TTA_MODES}
    plain = tile_count(200, 300, model, settings["none"])
    assert tile_count(200, 300, model, settings["flips"]) == 4 * plain
    assert tile_count(200, 300, model, settings["dihedral"]) > 4 * plain  # the quarter turns tile 300x200


def test_predictions_with_tta_keep_shape_and_range():
    image = fundus_like(150, 230)
    maps = predict_probabilities(tiny_model(), image, TileSettings(tile_size=256, tta="dihedral"))
    assert maps.shape == (2, 150, 230) and maps.dtype == np.float32
    assert 0 <= maps.min() and maps.max() <= 1


def test_auto_is_hflip_on_a_gpu_and_none_on_the_cpu():
    assert resolve_tta("auto", on_gpu=True) == "hflip" and resolve_tta("auto", on_gpu=False) == "none"
    assert resolve_tta("flips", on_gpu=False) == "flips"
    with pytest.raises(ValueError, match="tta"):
        resolve_tta("mirror", on_gpu=True)
