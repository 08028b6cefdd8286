"""Every run config loads (configs/, configs/probes/, the campaigns' resolved ones and the configs the campaign
scripts write), round-trips through its plain form, and a bad config is a one-line error naming the key."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from model.config import RedSegConfig
from model.fov import idrid_fov_diameter
from training.config import (ConfigError, OptimizerConfig, ScheduleConfig, StageConfig, TrainConfig, load_config,
                             resolve)
from training.data.idrid import DEFAULT_HOLDOUT

PROJECT = Path(__file__).resolve().parents[2]
CONFIGS = sorted([*(PROJECT / "configs").rglob("*.yaml"), *PROJECT.glob("campaign/*/config.yaml"),
                  *PROJECT.glob("campaign/*/*/config.yaml")])


def test_the_configs_are_found():
    names = {str(path.relative_to(PROJECT)) for path in CONFIGS}
    assert {"configs/cpu-default.yaml", "configs/smoke.yaml", "configs/probes/width-025.yaml",
            "campaign/cpu-campaign/config.yaml", "campaign/gpu-lent/run/config.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(PROJECT)))
def test_config_loads_and_round_trips(path):
    config = load_config(path)
    assert isinstance(config, TrainConfig) and isinstance(config.model, RedSegConfig)
    assert config.stages and all(isinstance(stage, StageConfig) and stage.name for stage in config.stages)
    plain = config.to_dict()
    assert yaml.safe_load(yaml.safe_dump(plain)) == plain == json.loads(json.dumps(plain))  # plain data only
    assert resolve(plain) == config


def test_defaults_and_partial_sections():
    config = resolve({"model": {"working_long_side": 720}, "data": {"holdout": "default"},
                      "deep_supervision": {"lesion_weights": {"MA": 2}},
                      "stages": [{"optimizer": {"lr": "1e-4"}}, {"name": "two", "schedule": {"name": "cosine"}}]})
    assert config.model.fov_diameter == idrid_fov_diameter(720)
    assert config.data.holdout == DEFAULT_HOLDOUT
    assert config.deep_supervision.lesion_weights == {"MA": 2.0, "HE": 1.0}
    assert [stage.name for stage in config.stages] == ["stage1", "two"]
    assert config.stages[0].optimizer == OptimizerConfig(lr=1e-4)  # YAML 1.1 reads 1e-4 as a string
    assert config.stages[1].schedule == ScheduleConfig(name="cosine")


def test_model_scale_defaults_to_idrids_disc_and_can_be_turned_off():
    stages = [{"loss": "balanced_bce"}]
    assert resolve({"model": {"fov_diameter": None}, "stages": stages}).model.fov_diameter is None
    assert resolve({"model": {"fov_diameter": 900.0}, "stages": stages}).model.fov_diameter == 900.0
    assert resolve({"stages": stages}).model.fov_diameter == idrid_fov_diameter(1440)


def test_the_campaign_scales_by_the_fundus_disc():
    assert load_config(PROJECT / "configs" / "cpu-campaign.yaml").model.fov_diameter == pytest.approx(1146.2)


def test_legacy_amp_key_still_reads():
    assert resolve({"amp": False, "stages": [{}]}).precision == "fp32"
    assert resolve({"amp": True, "stages": [{}]}).precision == "auto"


@pytest.mark.parametrize("text, message", [
    ("stages: [{}, {iterations: ten}]", "stages[1].iterations: expected an integer, got 'ten'"),
    ("stages: [{itertions: 3}]", "unknown key 'itertions' in stages[0] (did you mean 'iterations'?)"),
    ("stagse: [{}]", "unknown key 'stagse' (did you mean 'stages'?)"),
    ("stages: []", "the config needs at least one stage under 'stages'"),
    ("stages: [{loss: dice}]", "stages[0].loss: expected one of 'balanced_bce', 'topk', 'fnfp', got 'dice'"),
    ("stages: [{loss: topk, loss_options: {kee: 5}}]", "stages[0].loss_options: unknown options for loss 'topk'"),
    ("stages: [{iterations: 0}]", "stages[0].iterations: must be at least 1, got 0"),
    ("stages: [{optimizer: {betas: [0.9]}}]", "stages[0].optimizer.betas: expected a list of 2 numbers, got [0.9]"),
    ("stages: [{schedule: {name: cos}}]", "stages[0].schedule.name: expected one of 'constant'"),
    ("stages: [{name: a}, {name: a}]", "stage names must be distinct"),
    ("stages: [{optimizer: adam}]", "stages[0].optimizer: expected a mapping, got 'adam'"),
    ("data: {holdout: [IDRiD_05, 7]}\nstages: [{}]", "data.holdout[1]: expected a string, got 7"),
    ("data: {lesion_share: 2}\nstages: [{}]", "data.lesion_share: must be at most 1.0, got 2"),
    ("model: {width: wide}\nstages: [{}]", "model.width: expected a number, got 'wide'"),
    ("model: {width: -1}\nstages: [{}]", "model: width must be positive"),
    ("model: {fov_diameter: big}\nstages: [{}]", "model.fov_diameter: expected a number or null, got 'big'"),
    ("precision: fp16\nstages: [{}]", "precision must be one of"),
    ("validation: {tile_size: 8}\nstages: [{}]", "validation: tile_size must be at least 16"),
    ("deep_supervision: {lesion_weights: {XX: 1}}\nstages: [{}]", "deep_supervision.lesion_weights: unknown lesions"),
    ("deep_supervision: {lesion_weights: {EX: 1}}\nstages: [{}]", "lesion_weights names ['EX'], which the model has no branch"),
    ("augment: {jpeg_quality: 0}\nstages: [{}]", "augment.jpeg_quality: must be in [1, 100]"),
    ("seed: true\nstages: [{}]", "seed: expected an integer, got True"),
    ("- stages", "the config must be a mapping"),
    ("stages: [{\n", "not valid YAML"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert "\n" not in str(error.value)


def _script(name: str):
    path = PROJECT / "campaign" / "gpu-lent" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"campaign_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configs_the_campaign_scripts_write_load(tmp_path):
    plan, probe = _script("plan"), _script("fnfp_probe")
    for weights in (None, tmp_path / "vgg16_bn-6c64b313.pth"):
        base = plan.base_config(weights, ".pack/idrid-working.npz", 4)
        budgeted = plan.budgeted(base, {"s_per_it": 0.5, "val_s": 10.0, "startup_s": 20.0}, 600)
        assert resolve(budgeted).stages[0].iterations >= plan.VALIDATIONS_PER_STAGE
    args = argparse.Namespace(pack=".pack/idrid-working.npz", workers=4, iterations=40, batch=2, crop=96)
    for variant in probe.VARIANTS.values():
        config = resolve(probe.variant_config(base, "best16.safetensors", variant, args))
        assert config.stages[0].loss == "fnfp" and config.init == "best16.safetensors"
