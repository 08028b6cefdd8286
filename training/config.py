"""The run config of ``redseg-train``: a small YAML file, merged over defaults and checked.

Relative paths in the file (data root, cache, ImageNet weights) are read from the current
working directory. Unknown keys are an error, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from model.config import RedSegConfig
from model.fov import idrid_fov_diameter
from model.inference import TileSettings
from model.precision import check_precision
from training.data.idrid import DEFAULT_HOLDOUT

_NETWORK = RedSegConfig()
_TILES = TileSettings()

DEFAULTS: dict = {
    "name": "redseg",
    "seed": 0,
    "device": "auto",
    "precision": "auto",  # the network's forward: auto (bf16 where native, see model.precision), bf16 or fp32
    "threads": None,  # torch.set_num_threads on CPU; None keeps torch's default (one per core)
    "data": {
        "root": None,  # None: ../shared/data/idrid next to the project
        "split": "train",
        "images": None,  # None: every image of the split; or a list of names (hold-out included)
        "holdout": "default",  # 'default' (every 5th image), a list of names, or [] for none
        "cache_dir": ".cache/idrid",
        "packed": None,  # a pack from redseg-pack-data to train from instead of root (a host without IDRiD)
        "lesion_share": 0.5,
        "workers": 0,
    },
    "augment": {"flips": True, "rot90": True, "brightness": 0.1, "contrast": 0.1, "gamma": 0.1, "scale": 0.1},
    "model": {  # RedSegConfig's defaults: the paper's network
        "width": _NETWORK.width,
        "batch_norm": _NETWORK.batch_norm,
        "ma_stages": list(_NETWORK.ma_stages),
        "he_stages": list(_NETWORK.he_stages),
        "working_long_side": _NETWORK.working_long_side,
        "fov_diameter": "idrid",  # IDRiD's fundus disc at working_long_side (model.fov); null: scale by the long side
        "fov_margin": _NETWORK.fov_margin,
    },
    "init": None,  # None/'none': random; torchvision VGG16(-BN) weights (a path, or 'torchvision': needs internet);
    # or a RedSeg checkpoint (.safetensors) of the same model config, to fine-tune
    "deep_supervision": {"side_weights": 1.0, "fused_weight": 1.0, "lesion_weights": {"MA": 1.0, "HE": 1.0}},
    "validation": {  # tiled as redseg-segment and the service tile (TileSettings' defaults)
        "tile_size": _TILES.tile_size,
        "min_overlap": _TILES.min_overlap,
        "batch_size": _TILES.batch_size,
        "select": "mean_ap",
    },
    "checkpoint": {"state_every": 50, "name": "redseg", "version": "0", "half": False},
    "log_every": 10,
    "stages": [],
}

STAGE_DEFAULTS: dict = {
    "name": None,
    "loss": "balanced_bce",
    "loss_options": {},
    "iterations": 100,
    "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.9, "betas": [0.9, 0.999]},
    "schedule": {"name": "constant", "warmup": 0, "min_lr_ratio": 0.0, "milestones": [], "gamma": 0.1, "power": 0.9},
    "batch_size": 8,
    "crop_size": 320,
    "val_every": 100,
    "init_from": "last",  # the previous stage's 'last' weights, or its 'best' hold-out checkpoint
    "freeze_batch_norm": False,  # batch norm keeps its running statistics (fine-tuning a trained network)
}

LOSSES = ("balanced_bce", "topk", "fnfp")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "poly")


class ConfigError(ValueError):
    pass


def _merge(defaults: dict, given: dict, where: str, open_keys: tuple[str, ...] = ()) -> dict:
    merged = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            raise ConfigError(f"unknown key {where}{key!r} (known: {sorted(defaults)})")
        if isinstance(defaults[key], dict) and key not in open_keys:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key} must be a mapping")
            merged[key] = _merge(defaults[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def resolve(raw: dict) -> dict:
    """A complete, checked config from a (partial) mapping."""
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a mapping")
    raw = _legacy_amp(raw)
    config = _merge(DEFAULTS, raw, "", open_keys=("stages",))
    try:
        check_precision(config["precision"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config["model"]["fov_diameter"] == "idrid":
        config["model"]["fov_diameter"] = idrid_fov_diameter(config["model"]["working_long_side"])
    try:
        RedSegConfig.from_dict(config["model"])  # checks the model section
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model: {exc}") from exc
    stages = []
    if not config["stages"]:
        raise ConfigError("the config needs at least one stage under 'stages'")
    for index, stage in enumerate(config["stages"]):
        stage = _merge(STAGE_DEFAULTS, stage, f"stages[{index}].", open_keys=("loss_options",))
        stage["name"] = stage["name"] or f"stage{index + 1}"
        if stage["loss"] not in LOSSES:
            raise ConfigError(f"stages[{index}].loss must be one of {LOSSES}, got {stage['loss']!r}")
        if stage["optimizer"]["name"] not in OPTIMIZERS:
            raise ConfigError(f"stages[{index}].optimizer.name must be one of {OPTIMIZERS}")
        if stage["schedule"]["name"] not in SCHEDULES:
            raise ConfigError(f"stages[{index}].schedule.name must be one of {SCHEDULES}")
        if stage["init_from"] not in ("last", "best"):
            raise ConfigError(f"stages[{index}].init_from must be 'last' or 'best'")
        for key in ("iterations", "batch_size", "crop_size", "val_every"):
            if int(stage[key]) < 1:
                raise ConfigError(f"stages[{index}].{key} must be a positive integer")
        stages.append(stage)
    names = [s["name"] for s in stages]
    if len(set(names)) != len(names):
        raise ConfigError(f"stage names must be distinct, got {names}")
    config["stages"] = stages
    if config["data"]["holdout"] == "default":
        config["data"]["holdout"] = list(DEFAULT_HOLDOUT)
    return config


def _legacy_amp(raw: dict) -> dict:
    """Configs written before ``precision`` said ``amp: true|false`` (bf16 on CUDA only)."""
    if "amp" not in raw:
        return raw
    raw = dict(raw)
    raw.setdefault("precision", "auto" if raw.pop("amp") else "fp32")
    return raw


def load_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        raw = yaml.safe_load(f) or {}
    config = resolve(raw)
    if raw.get("name") is None:
        config["name"] = path.stem
    return config
