"""The run config of ``redseg-train``: a small YAML file, read into frozen dataclasses and checked.

A file gives what differs from the defaults, which are the fields below (``RedSegConfig``'s for the
``model`` section, ``AugmentConfig``'s for ``augment``). Relative paths in it (data root, cache, pack,
``init`` weights) are read from the current working directory. An unknown key, or a value of the
wrong type or out of range, is an error naming the key, so a typo cannot silently fall back to a
default::

    configs/x.yaml: stages[1].iterations: expected an integer, got 'ten'
    configs/x.yaml: unknown key 'itertions' in stages[0] (did you mean 'iterations'?)

``TrainConfig.to_dict()`` is the resolved config as plain data (mappings, lists, numbers, strings):
what a run folder's ``config.yaml``, its training state and every checkpoint's provenance hold.
``resolve`` reads it (or any partial mapping) back.
"""

from __future__ import annotations

import difflib
import re
import types
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from model.config import ALL_LESIONS, RED_LESIONS, RedSegConfig
from model.fov import idrid_fov_diameter
from model.inference import TileSettings
from model.precision import check_precision
from training.data.dataset import AugmentConfig
from training.data.idrid import DEFAULT_HOLDOUT
from training.losses import build_loss

LOSSES = ("balanced_bce", "topk", "fnfp")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step", "poly")
_TILES = TileSettings()


class ConfigError(ValueError):
    """A run config that cannot be used; the message names the key (and, from ``load_config``, the file)."""


def _at_least(low: float, high: float | None = None, read: Callable | None = None) -> dict:
    """Field metadata: the value's bounds, and optionally a reader that replaces the type check."""
    return {"min": low, "max": high, "read": read}


# --- the sections --------------------------------------------------------------------------


def _read_holdout(value: Any, where: str) -> tuple[str, ...]:
    if value == "default":
        return DEFAULT_HOLDOUT
    return _value(tuple[str, ...], value, where)


@dataclass(frozen=True)
class DataConfig:
    root: str | None = None
    """The IDRiD folder; None: ../shared/data/idrid next to the project (``training.data.idrid``)."""
    split: str = "train"
    images: tuple[str, ...] | None = None
    """None: every image of the split; or the names to use (hold-out included)."""
    holdout: tuple[str, ...] = field(default=DEFAULT_HOLDOUT, metadata={"read": _read_holdout})
    """'default' in a file (every 5th image, IDRiD_05 .. IDRiD_50), a list of names, or [] for none."""
    cache_dir: str | None = ".cache/idrid"
    packed: str | None = None
    """A pack from redseg-pack-data to train from instead of ``root`` (a host without IDRiD)."""
    lesion_share: float = field(default=0.5, metadata=_at_least(0.0, 1.0))
    """The share of training crops centred on a lesion."""
    workers: int = field(default=0, metadata=_at_least(0))
    """DataLoader worker processes; 0 draws the crops in the training process."""


def _read_model(value: Any, where: str) -> RedSegConfig:
    """The ``model`` section: RedSegConfig's fields, with ``fov_diameter: idrid`` (the default) for
    IDRiD's fundus disc at ``working_long_side`` (``model.fov``); null scales by the long side."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _Mismatch(where, dict, value)
    value = dict(value)
    fov = value.pop("fov_diameter", "idrid")
    model = _build(RedSegConfig, value, where)
    if fov == "idrid":
        fov = idrid_fov_diameter(model.working_long_side)
    else:
        fov = _value(float | None, fov, f"{where}.fov_diameter")
    try:
        return replace(model, fov_diameter=fov)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class DeepSupervisionConfig:
    side_weights: float | tuple[float, ...] = 1.0
    """One weight for every side output, or one per branch tap."""
    fused_weight: float = 1.0
    lesion_weights: dict[str, float] = field(default_factory=lambda: {lesion: 1.0 for lesion in RED_LESIONS})
    """Per lesion of the model (MA, HE, and EX, SE where it has those branches); a lesion not named weighs 1."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.lesion_weights) - set(ALL_LESIONS))
        if unknown:
            raise ValueError(f"lesion_weights: unknown lesions {unknown} (known: {list(ALL_LESIONS)})")
        object.__setattr__(self, "lesion_weights", {lesion: 1.0 for lesion in RED_LESIONS} | dict(self.lesion_weights))


@dataclass(frozen=True)
class ValidationConfig:
    """Hold-out validation, tiled as redseg-segment and the service tile (TileSettings' defaults)."""

    tile_size: int = _TILES.tile_size
    min_overlap: int = _TILES.min_overlap
    batch_size: int = _TILES.batch_size
    select: Literal["mean_ap", "mean_auc_pr"] = "mean_ap"
    """The hold-out score that picks the best checkpoints."""

    def __post_init__(self) -> None:
        TileSettings(tile_size=self.tile_size, min_overlap=self.min_overlap, batch_size=self.batch_size)


def _read_version(value: Any, where: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # version: 2 means "2"
    return _value(str, value, where)


@dataclass(frozen=True)
class CheckpointConfig:
    state_every: int = field(default=50, metadata=_at_least(1))
    """Write the training state (``state.pt``, for --resume) every this many iterations."""
    name: str = "redseg"
    version: str = field(default="0", metadata={"read": _read_version})
    half: bool = False
    """Store the checkpoints' weights in float16."""


@dataclass(frozen=True)
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = field(default=1e-3, metadata=_at_least(0.0))
    weight_decay: float = field(default=0.0, metadata=_at_least(0.0))
    momentum: float = field(default=0.9, metadata=_at_least(0.0))
    """SGD's."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam's and AdamW's."""


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning rate over a stage: ``warmup`` linear steps, then ``name``'s curve (``engine.lr_factor``)."""

    name: Literal["constant", "cosine", "step", "poly"] = "constant"
    warmup: int = field(default=0, metadata=_at_least(0))
    min_lr_ratio: float = field(default=0.0, metadata=_at_least(0.0, 1.0))
    """cosine and poly: the floor, as a share of the stage's rate."""
    milestones: tuple[int, ...] = ()
    """step: the stage steps where the rate is multiplied by ``gamma``."""
    gamma: float = 0.1
    power: float = 0.9
    """poly's exponent."""


@dataclass(frozen=True)
class StageConfig:
    name: str | None = None
    """None: ``stage<N>``, N counted from 1."""
    loss: Literal["balanced_bce", "topk", "fnfp"] = "balanced_bce"
    loss_options: dict = field(default_factory=dict)
    """The loss's options (``training.losses.build_loss``), e.g. topk's key, k_min and step."""
    iterations: int = field(default=100, metadata=_at_least(1))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int = field(default=8, metadata=_at_least(1))
    """Crops per iteration (per process under DDP)."""
    crop_size: int = field(default=320, metadata=_at_least(8))
    val_every: int = field(default=100, metadata=_at_least(1))
    init_from: Literal["last", "best"] = "last"
    """The previous stage's last weights, or its best hold-out checkpoint."""
    freeze_batch_norm: bool = False
    """Batch norm keeps its running statistics (fine-tuning a trained network)."""

    def __post_init__(self) -> None:
        try:
            build_loss(self.loss, self.loss_options, self.iterations)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"loss_options: {exc}") from None


def _read_stages(value: Any, where: str) -> tuple[StageConfig, ...]:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(where, list, value)
    stages = []
    for index, raw in enumerate(value):
        stage = _build(StageConfig, raw, f"{where}[{index}]")
        stages.append(stage if stage.name else replace(stage, name=f"stage{index + 1}"))
    return tuple(stages)


@dataclass(frozen=True)
class TrainConfig:
    """A complete, checked run config (``resolve``, ``load_config``)."""

    name: str = "redseg"
    """The run's name; ``load_config`` takes the file's stem when the file names none."""
    seed: int = 0
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N; redseg-train --device overrides it."""
    precision: str = "auto"
    """The network's forward: auto (bf16 where native, see ``model.precision``), bf16 or fp32."""
    threads: int | None = field(default=None, metadata=_at_least(1))
    """torch.set_num_threads on CPU; None keeps torch's default (one per core)."""
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: RedSegConfig = field(default_factory=lambda: _read_model(None, "model"), metadata={"read": _read_model})
    """The network: RedSegConfig's defaults (the paper's), scaled by IDRiD's fundus disc."""
    init: str | None = None
    """None or 'none': random; torchvision VGG16(-BN) weights (a path, or 'torchvision': needs internet);
    or a RedSeg checkpoint (.safetensors) of the same model config, to fine-tune."""
    deep_supervision: DeepSupervisionConfig = field(default_factory=DeepSupervisionConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    log_every: int = field(default=10, metadata=_at_least(1))
    stages: tuple[StageConfig, ...] = field(default=(), metadata={"read": _read_stages})

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if not self.stages:
            raise ValueError("the config needs at least one stage under 'stages'")
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be distinct, got {names}")
        absent = sorted(set(self.deep_supervision.lesion_weights) - set(self.model.lesions))
        if absent:
            raise ValueError(f"deep_supervision.lesion_weights names {absent}, which the model has no branch for "
                             f"(its lesions: {list(self.model.lesions)})")

    def to_dict(self) -> dict:
        """The resolved config as plain YAML/JSON data (tuples as lists)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


# --- reading ------------------------------------------------------------------------------


def resolve(raw: dict) -> TrainConfig:
    """A complete, checked config from a (partial) mapping: a YAML file's, or ``TrainConfig.to_dict()``'s."""
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping, got {_show(raw)}")
    return _build(TrainConfig, _legacy_amp(raw), "")


def load_config(path: str | Path) -> TrainConfig:
    """The config in the YAML file ``path``; a ``ConfigError`` names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        place = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{place}: not valid YAML: {' '.join(str(problem).split())}") from None
    try:
        config = resolve(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if raw.get("name") is None:
        config = replace(config, name=path.stem)
    return config


def _legacy_amp(raw: dict) -> dict:
    """Configs written before ``precision`` said ``amp: true|false`` (bf16 on CUDA only)."""
    if "amp" not in raw:
        return raw
    raw = dict(raw)
    raw.setdefault("precision", "auto" if raw.pop("amp") else "fp32")
    return raw


class _Mismatch(ConfigError):
    """A value of the wrong type at ``where``."""

    def __init__(self, where: str, hint: Any, value: Any):
        self.where = where
        super().__init__(f"{where}: expected {_describe(hint)}, got {_show(value)}")


def _build(cls: type, data: Any, where: str):
    """An instance of the dataclass ``cls`` from the mapping ``data``; every key checked."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Mismatch(where, dict, data)
    known = [f.name for f in fields(cls) if f.init]
    for key in data:
        if key not in known:
            raise ConfigError(_unknown_key(key, where, known))
    hints = get_type_hints(cls)
    values = {}
    for f in fields(cls):
        if f.name in data:
            values[f.name] = _field_value(f, hints[f.name], data[f.name], f"{where}.{f.name}" if where else f.name)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        message = str(exc)
        if not where:
            raise ConfigError(message) from None
        key = re.match(r"(\w+): ", message)  # a check that names its field: "lesion_weights: ..."
        raise ConfigError(f"{where}.{message}" if key and key[1] in known else f"{where}: {message}") from None


def _field_value(f, hint: Any, raw: Any, where: str) -> Any:
    read = f.metadata.get("read")
    value = read(raw, where) if read else _value(hint, raw, where)
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if value is not None and low is not None and value < low:
        raise ConfigError(f"{where}: must be at least {low}, got {_show(raw)}")
    if value is not None and high is not None and value > high:
        raise ConfigError(f"{where}: must be at most {high}, got {_show(raw)}")
    return value


def _unknown_key(key: Any, where: str, known: list[str]) -> str:
    place = f" in {where}" if where else ""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return f"unknown key {key!r}{place} ({hint})"


def _value(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and converted: a list to a tuple, an int to a float)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in args:
            if option is type(None):
                continue
            try:
                return _value(option, value, where)
            except _Mismatch as exc:
                if exc.where != where:
                    raise  # inside a list or mapping: that is the error to report
        raise _Mismatch(where, hint, value)
    if origin is Literal:
        if value in args:
            return value
        raise _Mismatch(where, hint, value)
    if origin is tuple:
        return _tuple(args, value, where, hint)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Mismatch(where, hint, value)
        if not args:
            return dict(value)
        return {_value(args[0], k, f"{where} key"): _value(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if is_dataclass(hint):
        return _build(hint, value, where)
    return _scalar(hint, value, where)


def _tuple(args: tuple, value: Any, where: str, hint: Any) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(where, hint, value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(value) != len(args):
        raise _Mismatch(where, hint, value)
    return tuple(_value(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{where}: no reader for the type {hint!r}")
    raise _Mismatch(where, hint, value)


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(option) for option in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin is list or hint is list:
        return "a list"
    if origin is dict or hint is dict or is_dataclass(hint):
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(hint, _describe(hint))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
