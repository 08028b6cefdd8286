import json

import pytest

from model import RedSegConfig


def test_defaults_are_the_papers():
    config = RedSegConfig()
    assert config.width == 1.0
    assert config.ma_stages == (2, 3, 4)
    assert config.he_stages == (3, 4, 5)
    assert config.stage_channels == (64, 128, 256, 512, 512)
    assert config.working_long_side == 1440
    assert config.branch_stages == {"MA": (2, 3, 4), "HE": (3, 4, 5)}


def test_width_scales_channels_and_never_reaches_zero():
    assert RedSegConfig(width=0.5).stage_channels == (32, 64, 128, 256, 256)
    assert min(RedSegConfig(width=0.001).stage_channels) == 1


def test_stages_are_sorted():
    assert RedSegConfig(ma_stages=(4, 2, 3)).ma_stages == (2, 3, 4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": -1.0},
        {"ma_stages": ()},
        {"ma_stages": (0, 2)},
        {"he_stages": (3, 6)},
        {"he_stages": (3, 3)},
        {"working_long_side": 16},
    ],
)
def test_invalid_configs_are_rejected(kwargs):
    with pytest.raises(ValueError):
        RedSegConfig(**kwargs)


def test_round_trip_through_json():
    config = RedSegConfig(width=0.25, batch_norm=True, ma_stages=(1, 2), he_stages=(4, 5), working_long_side=800)
    assert RedSegConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match="unknown"):
        RedSegConfig.from_dict(RedSegConfig().to_dict() | {"depth": 3})


def test_configs_saved_before_fov_scaling_scale_by_the_long_side():
    old = {k: v for k, v in RedSegConfig(width=0.25).to_dict().items() if not k.startswith("fov_")}
    config = RedSegConfig.from_dict(old)
    assert config.fov_diameter is None and config.working_long_side == 1440
    fov = RedSegConfig(fov_diameter=1137.5, fov_margin=0.1)
    assert RedSegConfig.from_dict(json.loads(json.dumps(fov.to_dict()))) == fov
    with pytest.raises(ValueError, match="fov_diameter"):
        RedSegConfig(fov_diameter=10)
