import cv2
import numpy as np
import pytest
import torch

import model.inference as inference
from model import LESIONS, TileSettings, predict_probabilities
from model.fov import PhotographTooSmall
from model.formats.images import read_image
from model.fov import fov_mask, max_working_side
from model.inference import sliding_window, tile_count, tile_grid, tile_layout, tile_span
from model.config import RedSegConfig
from model.network import RedSeg

from tests.model.conftest import SAMPLE_IMAGE, fundus_like, tiny_model

TILED_VS_WHOLE_ATOL = 0.01
"""Largest |tiled - whole-image| probability in the interior with tiles of 128 and overlap 64."""


def smooth_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    red = 120 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    green = 60 + 20 * np.sin(yy / 7.0)
    return np.stack([red, green, np.full_like(red, 20)], -1).astype(np.uint8)


def sharp_model():
    """A tiny random network whose fusion is scaled up so its maps span a useful range (about 0.3..0.6)."""
    model = tiny_model(working_long_side=256)
    with torch.no_grad():
        for branch in model.branches.values():
            branch.fuse.weight.mul_(30)
    return model


def normalised(model, image: np.ndarray) -> torch.Tensor:
    return model.normalize(torch.from_numpy(image).permute(2, 0, 1)[None])


# MONAI-style table: (image height, width, tile settings), output shape == input shape.
SHAPE_CASES = [
    (64, 1, TileSettings()),  # the least long side the tiny model (256) takes: enlarged 4 times
    (5, 70, TileSettings()),
    (64, 64, TileSettings(tile_size=128, min_overlap=0)),
    (33, 65, TileSettings(tile_size=64, min_overlap=8)),
    (101, 77, TileSettings(tile_size=48, min_overlap=16, batch_size=3)),
    (300, 200, TileSettings(tile_size=64, min_overlap=32)),  # portrait, resized to the working scale
    (200, 300, TileSettings(tile_size=96, min_overlap=17, batch_size=1)),
    (255, 256, TileSettings(tile_size=256, min_overlap=64)),  # a single tile
    (2848, 4288, TileSettings(tile_size=128, min_overlap=32)),  # IDRiD size
    (4288, 2848, TileSettings(tile_size=128, min_overlap=32, fov_mask=False)),
]


@pytest.mark.parametrize("height, width, settings", SHAPE_CASES)
def test_output_shape_equals_input_shape(model, height, width, settings):
    image = fundus_like(height, width)
    probabilities = predict_probabilities(model, image, settings)
    assert probabilities.shape == (len(LESIONS), height, width)
    assert probabilities.dtype == np.float32
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    assert np.isfinite(probabilities).all()


@pytest.mark.parametrize("height, width", [(1, 1), (5, 7), (63, 63), (1, 63)])
def test_a_photograph_the_model_would_enlarge_over_4_times_is_refused(model, height, width):
    with pytest.raises(PhotographTooSmall, match="at least 64 are needed"):
        predict_probabilities(model, fundus_like(height, width))


@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)]
)
def test_rejects_non_rgb_uint8(model, bad):
    with pytest.raises(ValueError, match="RGB uint8"):
        predict_probabilities(model, bad)


@pytest.mark.parametrize("height, width", [(176, 256), (170, 250)])
def test_tiled_matches_whole_image_forward_in_the_interior(height, width):
    model = sharp_model()
    image = fundus_like(height, width)
    settings = TileSettings(tile_size=128, min_overlap=64, fov_mask=False, precision="fp32")
    x = normalised(model, image)
    with torch.inference_mode():
        whole = torch.sigmoid(model(x).fused)[0]
        tiled = sliding_window(model, x, settings)
    assert len(tile_grid(176, 256, settings, align=16)) > 1
    assert tiled.shape == whole.shape
    margin = 16  # the whole-image forward is not padded to the stride; its bottom/right edge differs
    interior = (slice(None), slice(margin, height - margin), slice(margin, width - margin))
    assert whole[interior].max() - whole[interior].min() > 10 * TILED_VS_WHOLE_ATOL
    torch.testing.assert_close(tiled[interior], whole[interior], rtol=0, atol=TILED_VS_WHOLE_ATOL)


def column_gradients(probabilities: torch.Tensor) -> np.ndarray:
    """Mean |p(x+1) - p(x)| of each column step, over rows and lesions."""
    return (probabilities[:, :, 1:] - probabilities[:, :, :-1]).abs().mean(dim=(0, 1)).numpy()


def seam_ratio(model, image, settings) -> float:
    """Largest column gradient on a tile's edge over the largest elsewhere in the image's interior."""
    x = normalised(model, image)
    with torch.inference_mode():
        gradients = column_gradients(sliding_window(model, x, settings))
    layout = tile_layout(*image.shape[:2], settings, align=model.encoder.stride)
    edges = {c for x0 in layout.xs for c in (x0 - 1, x0, x0 + layout.tile_w - 2, x0 + layout.tile_w - 1)}
    edges = sorted(c for c in edges if 0 < c < len(gradients) - 1)
    margin = 16  # the network's own zero padding makes the image's outer columns steep
    others = [c for c in range(margin, len(gradients) - margin) if c not in edges]
    return float(gradients[edges].max() / gradients[others].max())


SEAM_TOLERANCE = 1.0
"""Tile edges may be no steeper than the steepest other column of the image's interior."""


def test_no_seams_at_tile_borders():
    model = sharp_model()
    image = smooth_image(176, 256)
    settings = TileSettings(tile_size=128, min_overlap=32, fov_mask=False, precision="fp32")
    assert seam_ratio(model, image, settings) <= SEAM_TOLERANCE


def test_seam_check_detects_unblended_tiles(monkeypatch):
    model = sharp_model()
    monkeypatch.setattr(inference, "blend_weight", lambda height, width, ramp: torch.ones(height, width))
    settings = TileSettings(tile_size=128, min_overlap=32, fov_mask=False, precision="fp32")
    assert seam_ratio(model, smooth_image(176, 256), settings) > 1.5


def test_deterministic(model):
    image = fundus_like(300, 420, seed=5)
    settings = TileSettings(tile_size=96, min_overlap=32)
    first = predict_probabilities(model, image, settings)
    second = predict_probabilities(model, image, settings)
    assert np.array_equal(first, second)


def test_batch_size_does_not_change_the_result(model):
    image = fundus_like(200, 256, seed=2)
    one = predict_probabilities(model, image, TileSettings(tile_size=96, min_overlap=32, batch_size=1))
    many = predict_probabilities(model, image, TileSettings(tile_size=96, min_overlap=32, batch_size=5))
    np.testing.assert_allclose(one, many, atol=1e-5)


def test_fov_mask_zeroes_the_surround(model):
    image = fundus_like(180, 256, seed=3)
    inside = fov_mask(image)
    assert inside[90, 128] and not inside[0, 0] and not inside[179, 255]
    masked = predict_probabilities(model, image, TileSettings(tile_size=128, min_overlap=32))
    unmasked = predict_probabilities(model, image, TileSettings(tile_size=128, min_overlap=32, fov_mask=False))
    assert masked[:, 0, 0].max() == 0.0 and unmasked[:, 0, 0].min() > 0.0
    np.testing.assert_array_equal(masked[:, 90, 128], unmasked[:, 90, 128])


def test_real_fundus_photograph(model):
    image = read_image(SAMPLE_IMAGE)
    assert image.shape == (2848, 4288, 3)
    inside = fov_mask(image)
    assert 0.5 < inside.mean() < 0.95 and not inside[0, 0]
    probabilities = predict_probabilities(model, image, TileSettings(tile_size=128, min_overlap=32))
    assert probabilities.shape == (2, 2848, 4288)
    assert probabilities[:, :20, :20].max() == 0.0
    assert probabilities[:, 1424, 2144].min() > 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast_close_to_fp32():
    model = tiny_model().cuda()
    image = fundus_like(600, 900)
    fp32 = predict_probabilities(model, image, TileSettings(precision="fp32"))
    amp = predict_probabilities(model, image, TileSettings(precision="bf16"))
    np.testing.assert_allclose(amp, fp32, atol=0.02)


# Tile placement properties, over many sizes.
@pytest.mark.parametrize("align", [1, 4, 16])
@pytest.mark.parametrize("tile, min_overlap", [(16, 0), (32, 8), (64, 16), (128, 64), (512, 64), (1024, 64), (100, 99)])
def test_tile_span_covers_with_min_overlap(tile, min_overlap, align):
    for length in range(1, 1500, 7):
        padded = -(-length // align) * align
        try:
            size, starts = tile_span(length, tile, min_overlap, align)
        except ValueError:
            assert -(-min_overlap // align) * align >= tile // align * align  # overlap leaves no stride
            continue
        assert starts[0] == 0 and starts[-1] + size == padded, (length, size, starts)
        assert size <= max(tile, align) and size % align == 0
        assert all(s % align == 0 for s in starts)
        assert all(b > a for a, b in zip(starts, starts[1:]))
        assert all(a + size - b >= min_overlap for a, b in zip(starts, starts[1:])), (length, size, starts)
        if padded <= tile:
            assert starts == [0] and size == padded
        else:  # one tile fewer could not cover the axis with the overlap
            tile_a, overlap_a = tile // align * align, -(-min_overlap // align) * align
            assert (len(starts) - 2) * (tile_a - overlap_a) + tile_a < padded


def test_tile_span_uses_as_few_and_as_small_tiles_as_possible():
    assert tile_span(1440, 1024, 64, 16) == (752, [0, 688])
    assert tile_span(960, 1024, 64, 16) == (960, [0])
    size, starts = tile_span(1440, 512, 64, 16)
    assert len(starts) == 4 and size < 512


def test_tile_span_and_grid():
    assert tile_span(100, 100, 10)[1] == [0]
    assert tile_span(100, 60, 20)[1] == [0, 40]
    settings = TileSettings(tile_size=64, min_overlap=16)
    grid = tile_grid(100, 150, settings, align=1)
    layout = tile_layout(100, 150, settings, align=1)
    assert grid == [(y, x) for y in layout.ys for x in layout.xs]
    covered = np.zeros((100, 150), int)
    for y, x in grid:
        covered[y : y + layout.tile_h, x : x + layout.tile_w] += 1
    assert covered.min() >= 1


def test_default_grid_is_what_the_pipeline_runs(monkeypatch):
    """``tile_grid`` with its defaults (used to count tiles) matches the tiles a default-depth network runs."""
    assert tile_grid(956, 1440, TileSettings()) == [(0, 0), (0, 688)]
    model = tiny_model(working_long_side=300)
    settings = TileSettings(tile_size=96, min_overlap=32, fov_mask=False)
    seen = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: seen.append(x.shape[0]) or forward(x))
    predict_probabilities(model, fundus_like(199, 300), settings)
    assert sum(seen) == len(tile_grid(199, 300, settings)) == tile_count(199, 300, model, settings)


def test_default_tiles_hold_any_disc_scaled_photograph_in_one():
    """The bundled models' disc scaling (IDRiD's disc, 1146.2 working pixels across) makes images of at most
    ``max_working_side`` pixels a side; the default tile holds them whole, so no photograph pays for a seam."""
    side = max_working_side(RedSegConfig(fov_diameter=1146.2))
    assert tile_grid(side, side, TileSettings()) == [(0, 0)]
    assert tile_grid(976, 1200, TileSettings()) == [(0, 0)]  # an IDRiD photograph


@pytest.mark.parametrize("height, width, tile_size, tiles", [
    (2848, 4288, 1024, 2),   # IDRiD at 1440x956: two 960x752 tiles
    (4288, 2848, 1024, 2),   # portrait
    (2848, 4288, 512, 8),    # 4 x 2
    (600, 600, 1024, 4),     # enlarged to 1440x1440: 2 x 2
    (100, 150, 1024, 2),     # enlarged to 960x1440
])
def test_tile_count_of_original_sizes(height, width, tile_size, tiles):
    model = tiny_model(working_long_side=1440)
    assert tile_count(height, width, model, TileSettings(tile_size=tile_size)) == tiles


@pytest.mark.parametrize("kwargs", [{"tile_size": 8}, {"min_overlap": -1}, {"min_overlap": TileSettings.tile_size}, {"batch_size": 0}])
def test_invalid_tile_settings(kwargs):
    with pytest.raises(ValueError):
        TileSettings(**kwargs)


def test_maps_are_the_working_scale_result_resized_back(model):
    image = fundus_like(500, 700)
    settings = TileSettings(tile_size=128, min_overlap=32, fov_mask=False, precision="fp32")
    full = predict_probabilities(model, image, settings)
    small = cv2.resize(image, (256, 183), interpolation=cv2.INTER_AREA)
    with torch.inference_mode():
        working = sliding_window(model, normalised(model, small), settings).numpy()
    expected = cv2.resize(working.transpose(1, 2, 0), (700, 500), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    np.testing.assert_allclose(full, expected, atol=1e-6)


def test_a_four_lesion_network_answers_four_maps_over_several_tiles():
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=256, ex_stages=(2, 3), se_stages=(3,), exudate_hidden=4)).eval()
    image = np.random.default_rng(0).integers(0, 255, (170, 256, 3), dtype=np.uint8)
    settings = TileSettings(tile_size=96, min_overlap=16, fov_mask=False)
    assert tile_count(170, 256, model, settings) > 1
    probabilities = predict_probabilities(model, image, settings)
    assert probabilities.shape == (4, 170, 256)
    whole = predict_probabilities(model, image, TileSettings(tile_size=512, fov_mask=False))
    assert np.abs(probabilities - whole).mean() < 0.05
