"""Every shipped run config loads and builds its network (a typo in a key is an error, not a silent default)."""

from pathlib import Path

import pytest

from model import RedSegConfig
from training.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


def test_the_configs_are_found():
    assert {"cpu-default.yaml", "cpu-campaign.yaml", "smoke.yaml"} <= {path.name for path in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_config_loads(path):
    config = load_config(path)
    RedSegConfig.from_dict(config["model"])
    assert config["stages"] and config["precision"] in ("auto", "bf16", "fp32")


def test_the_campaign_scales_by_the_fundus_disc():
    config = load_config(next(path for path in CONFIGS if path.name == "cpu-campaign.yaml"))
    assert config["model"]["fov_diameter"] == pytest.approx(1146.2)
