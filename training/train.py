"""``redseg-train``: Red-Seg's staged training (warm-up, top-k, FN+FP) from a YAML config.

    redseg-train --config configs/cpu-default.yaml [--out DIR] [--resume] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=N -m training.train --config ...   (DDP: gloo on CPU, nccl on CUDA)

The run folder (``--out``, default ``runs/<config name>``) gets: ``config.yaml`` (resolved),
``log.jsonl`` (losses, learning rate, s/it, validation metrics), ``curves.png``, ``state.pt``
(the training state for ``--resume``, written atomically every ``checkpoint.state_every``
iterations), ``checkpoints/<stage>-best.safetensors`` and ``<stage>-last.safetensors`` per stage,
and ``best.safetensors``: the best hold-out checkpoint over all stages. Checkpoints are RedSeg
checkpoints (``model.checkpoint``) that ``redseg-segment`` and the service load, with the
hold-out best-F1 thresholds, the metrics and the provenance (config, iteration, git commit).
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle threads sleep instead of spinning. On a shared 2-core machine,
# spinning threads fight the other processes and make an iteration several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from model.cli_help import plain_help
from model.config import RedSegConfig
from model.devices import resolve_device
from model.inference import TileSettings
from model.precision import to_channels_last, uses_bf16
from training.config import ConfigError, DataConfig, StageConfig, TrainConfig, load_config, resolve
from training.data.idrid import DatasetLayoutError
from training.data.pack import PackError
from training.engine import (
    build_criterion,
    build_loader,
    build_model,
    build_optimizer,
    build_patch_dataset,
    build_scheduler,
    load_state,
    rng_state,
    save_state,
    select_samples,
    set_rng_state,
    stage_seed,
    to_working_scale,
    train_step,
    unwrap,
    validate,
)
from training.plots import plot_curves

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="redseg-train", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--config", required=True, help="YAML run config (see configs/)")
    parser.add_argument("--out", help="run folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/state.pt")
    parser.add_argument("--device", default=None, help="auto (CUDA when present), cpu, cuda, cuda:N (default: the config's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: the config's, else one per core); 1 is often faster on a busy machine")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    parser.add_argument("--stop-at", type=int, default=None, help=argparse.SUPPRESS)  # tests: die after this global step
    return parser.parse_args(argv)


def git_commit() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "model", "training"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10,
        )
        return {"commit": commit.stdout.strip() or None, "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def pick_device(name: str, local_rank: int) -> torch.device:
    try:
        device = resolve_device(name)
    except (RuntimeError, ValueError) as exc:
        raise SystemExit(f"redseg-train: {exc}") from None
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # crops and validation tiles keep their shapes: pick the fastest kernels once
    return device


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return usage_error(exc)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(args.device or config.device, local_rank)
    threads = args.threads or config.threads
    if threads:
        torch.set_num_threads(threads)
    distributed = world_size > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return run(config, args, device, rank, world_size)
    except (ConfigError, DatasetLayoutError, PackError) as exc:  # the config's data: missing, or not what it names
        return usage_error(exc)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class Run:
    """What every part of a training run reads: the config, where it writes, the data and the device."""

    config: TrainConfig
    out: Path
    device: torch.device
    rank: int
    world_size: int
    show_progress: bool
    train_items: list
    holdout_items: list
    tiles: TileSettings
    commit: dict
    last_plot: float = field(default_factory=time.monotonic)

    @property
    def main_process(self) -> bool:
        return self.rank == 0

    @property
    def state_path(self) -> Path:
        return self.out / "state.pt"

    @property
    def log_path(self) -> Path:
        return self.out / "log.jsonl"

    @property
    def checkpoint_dir(self) -> Path:
        return self.out / "checkpoints"

    def log(self, record: dict) -> None:
        if self.main_process:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record | {"time": round(time.time(), 1)}) + "\n")


@dataclass
class Position:
    """Where the run is: the stage, the step within it, the step over all stages, and the best scores."""

    stage_index: int = 0
    step: int = 0
    global_step: int = 0
    best: dict = field(default_factory=lambda: {"overall": None})


def usage_error(exc: Exception) -> int:
    """A config or data error: one line on stderr, exit status 2 (as argparse's)."""
    print(f"redseg-train: error: {exc}", file=sys.stderr)
    return 2


def run(config: TrainConfig, args, device: torch.device, rank: int, world_size: int) -> int:
    out = Path(args.out or Path("runs") / config.name)
    resume = open_run_folder(out, config, args.resume, rank == 0)
    torch.manual_seed(config.seed)
    show = rank == 0 and not args.no_progress
    train_items, holdout_items = load_data(config.data, config.model, show)
    tiles = validation_tiles(config)
    ctx = Run(config, out, device, rank, world_size, show, train_items, holdout_items, tiles, git_commit())
    try:
        network = build_model(config.model, config.init if resume is None else None)
    except (ValueError, CheckpointError) as exc:
        raise SystemExit(f"redseg-train: {exc}") from None
    model = to_channels_last(network.to(device))
    position = Position()
    if resume is not None:
        position = restore(model, resume, ctx, args.config)
    if ctx.main_process:
        print(f"redseg-train: {len(train_items)} training / {len(holdout_items)} hold-out images, device {device} "
              f"({'bf16' if uses_bf16(device, config.precision) else 'fp32'}, channels_last), "
              f"world size {world_size}, out {out}", file=sys.stderr)
    stages = config.stages
    for stage_index in range(position.stage_index, len(stages)):
        start = position.step if stage_index == position.stage_index else 0
        if stage_index > 0 and start == 0 and stages[stage_index].init_from == "best":
            load_best(model, ctx.checkpoint_dir / f"{stages[stage_index - 1].name}-best.safetensors", device)
        position.stage_index, position.step = stage_index, start
        train_stage(ctx, model, position, resume if start > 0 else None, args.stop_at)
        if world_size > 1:
            dist.barrier()
    if ctx.main_process:
        finish(ctx, position)
    return 0


def open_run_folder(out: Path, config: TrainConfig, resume: bool, main_process: bool) -> dict | None:
    """Create (or reopen, with ``resume``) the run folder; returns the saved training state to resume from."""
    state_path = out / "state.pt"
    state = None
    if resume:
        if not state_path.is_file():
            raise SystemExit(f"redseg-train: --resume but no training state at {state_path}")
        state = load_state(state_path)
    elif main_process and state_path.exists():
        raise SystemExit(f"redseg-train: {out} already holds a run; pass --resume to continue it, or another --out")
    if main_process:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        if state is not None:
            _truncate_log(out / "log.jsonl", state["global_step"])
        else:
            (out / "log.jsonl").write_text("")
    return state


def load_data(data: DataConfig, model_config: RedSegConfig, show: bool) -> tuple[list, list]:
    """The working-scale training and hold-out images of the config's ``data`` section: from its pack, or
    from the IDRiD folder through the cache."""
    train_samples, holdout_samples = select_samples(data, model_config)
    return (to_working_scale(train_samples, data, model_config, show),
            to_working_scale(holdout_samples, data, model_config, show))


def validation_tiles(config: TrainConfig) -> TileSettings:
    v = config.validation
    return TileSettings(tile_size=v.tile_size, min_overlap=v.min_overlap, batch_size=v.batch_size,
                        fov_mask=True, precision=config.precision)


def restore(model, resume: dict, ctx: Run, config_path: str) -> Position:
    unwrap(model).load_state_dict(resume["model"])
    set_rng_state(resume["rng"])
    position = Position(resume["stage_index"], resume["step"], resume["global_step"], json.loads(resume["best"]))
    if ctx.main_process and not same_config(resume["config"], ctx.config):
        print(f"redseg-train: warning: {config_path} differs from the config {ctx.state_path} was written with; "
              "continuing with the new one", file=sys.stderr)
    stages = ctx.config.stages
    ctx.log({"event": "resume", "stage": stages[min(position.stage_index, len(stages) - 1)].name,
             "step": position.global_step})
    return position


def same_config(saved: str, config: TrainConfig) -> bool:
    """Whether a training state's config (JSON, as ``save_training_state`` writes it) is ``config``."""
    try:
        return resolve(json.loads(saved)) == config
    except (ConfigError, json.JSONDecodeError):
        return False


def train_stage(ctx: Run, model, position: Position, resume: dict | None, stop_at: int | None) -> None:
    """Train one stage from ``position.step`` to its last iteration, validating and saving as configured."""
    config, stage = ctx.config, ctx.config.stages[position.stage_index]
    net = model
    if ctx.world_size > 1:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    criterion = build_criterion(stage, config.deep_supervision, config.model.lesions)
    optimizer = build_optimizer(model, stage.optimizer)
    scheduler = build_scheduler(optimizer, stage.iterations, stage.schedule)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
    progress = _progress_bar(ctx, stage, position.step)
    window = LossWindow()
    for images, masks in stage_loader(ctx, stage, position):
        loss, parts = train_step(net, criterion, optimizer, images, masks, position.step, ctx.device,
                                 config.precision, freeze_batch_norm=stage.freeze_batch_norm)
        scheduler.step()
        position.step += 1
        position.global_step += 1
        window.add(loss)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
        last = position.step == stage.iterations
        if position.step % config.log_every == 0 or last:
            ctx.log({"event": "train", "stage": stage.name, "stage_step": position.step, "step": position.global_step,
                     "loss": window.mean(), "lr": scheduler.get_last_lr()[0], "s_per_it": window.seconds_per_step(),
                     "parts": parts, **({"k": criterion.loss.last_k} if stage.loss == "topk" else {})})
            window = LossWindow()
        if position.step % stage.val_every == 0 or last:
            validate_and_save(ctx, model, position, progress)
            window = LossWindow()
        if position.global_step % config.checkpoint.state_every == 0 or last:
            save_training_state(ctx, model, optimizer, scheduler, position, done=last)
        if stop_at is not None and position.global_step >= stop_at:
            if progress is not None:
                progress.close()
            raise SystemExit(75)
    if progress is not None:
        progress.close()


def stage_loader(ctx: Run, stage: StageConfig, position: Position):
    """The stage's batches from ``position.step`` on (``training.engine.build_loader``)."""
    config = ctx.config
    dataset = build_patch_dataset(ctx.train_items, stage, config.data, config.augment,
                                  stage_seed(config.seed, position.stage_index))
    return build_loader(dataset, stage, position.step, config.data.workers, ctx.device, ctx.rank, ctx.world_size)


class LossWindow:
    """The mean loss and seconds per step since the window opened (between log records)."""

    def __init__(self) -> None:
        self.total, self.count, self.started = 0.0, 0, time.perf_counter()

    def add(self, loss: float) -> None:
        self.total += loss
        self.count += 1

    def mean(self) -> float:
        return self.total / max(self.count, 1)

    def seconds_per_step(self) -> float:
        return (time.perf_counter() - self.started) / max(self.count, 1)


def _progress_bar(ctx: Run, stage: StageConfig, start: int):
    if not ctx.show_progress:
        return None
    from tqdm import tqdm

    return tqdm(total=stage.iterations, initial=start, desc=f"{stage.name} ({stage.loss})", unit="it",
                dynamic_ncols=True)


def validate_and_save(ctx: Run, model, position: Position, progress) -> None:
    """Hold-out validation; the stage's and the run's best checkpoints, and the stage's last one."""
    if ctx.main_process:
        stage = ctx.config.stages[position.stage_index]
        last = position.step == stage.iterations
        started = time.perf_counter()
        metrics = validate(unwrap(model), ctx.holdout_items, ctx.device, ctx.tiles) if ctx.holdout_items else None
        record = {"event": "val", "stage": stage.name, "stage_step": position.step, "step": position.global_step,
                  "seconds": time.perf_counter() - started}
        provenance = {"config": ctx.config.to_dict(), "stage": stage.name, "stage_step": position.step,
                      "global_step": position.global_step, "git": ctx.commit, "world_size": ctx.world_size,
                      "holdout": list(ctx.config.data.holdout)}
        if metrics is not None:
            record["metrics"], record["best"] = metrics, save_if_best(ctx, model, position, metrics, provenance)
            if progress is not None:
                progress.write(validation_line(stage.name, position.step, stage.iterations, metrics, ctx.config.model.lesions,
                                               ctx.config.validation.select, position.best["overall"]))
        if last:
            thresholds = None if metrics is None else operating_thresholds(ctx, metrics)
            _save(ctx.checkpoint_dir / f"{stage.name}-last.safetensors", model, ctx.config, thresholds,
                  provenance, metrics or {})
        ctx.log(record)
        plot_curves_every(ctx, 300)
    if ctx.world_size > 1:
        dist.barrier()


def save_if_best(ctx: Run, model, position: Position, metrics: dict, provenance: dict) -> dict:
    """Save the stage's and the run's best checkpoints when ``metrics`` beat them; returns the best scores."""
    stage_name = ctx.config.stages[position.stage_index].name
    score = metrics[ctx.config.validation.select]
    thresholds = operating_thresholds(ctx, metrics)
    best = position.best
    if best.get(stage_name) is None or score > best[stage_name]["score"]:
        best[stage_name] = {"score": score, "step": position.global_step, "stage_step": position.step}
        _save(ctx.checkpoint_dir / f"{stage_name}-best.safetensors", model, ctx.config, thresholds, provenance, metrics)
    if best["overall"] is None or score > best["overall"]["score"]:
        best["overall"] = {"score": score, "step": position.global_step, "stage": stage_name,
                           "stage_step": position.step}
        _save(ctx.out / "best.safetensors", model, ctx.config, thresholds, provenance, metrics)
    return best


def operating_thresholds(ctx: Run, metrics: dict) -> dict[str, float]:
    """The hold-out's best-F1 threshold of each of the model's lesions."""
    return {lesion: metrics[lesion]["threshold"] for lesion in ctx.config.model.lesions}


def validation_line(stage: str, step: int, iterations: int, metrics: dict, lesions: tuple[str, ...], select: str,
                    overall: dict) -> str:
    ap = " ".join(f"{lesion} {metrics[lesion]['average_precision']:.4f}" for lesion in lesions)
    auc = " ".join(f"{lesion} {metrics[lesion]['auc_pr_idrid']:.4f}" for lesion in lesions)
    return (f"[{stage} {step}/{iterations}] hold-out AP {ap}  AUC_PR {auc}  "
            f"({select} best {overall['score']:.4f} @ {overall['stage']} {overall['stage_step']})")


def plot_curves_every(ctx: Run, seconds: float) -> None:
    if time.monotonic() - ctx.last_plot > seconds:
        plot_curves(ctx.log_path, ctx.out / "curves.png")
        ctx.last_plot = time.monotonic()


def save_training_state(ctx: Run, model, optimizer, scheduler, position: Position, done: bool) -> None:
    """``state.pt`` for ``--resume``: at the end of a stage it points at the next stage's first step."""
    if not ctx.main_process:
        return
    save_state(ctx.state_path, {
        "model": unwrap(model).state_dict(),
        "optimizer": None if done else optimizer.state_dict(),
        "scheduler": None if done else scheduler.state_dict(),
        "stage_index": position.stage_index + 1 if done else position.stage_index,
        "step": 0 if done else position.step,
        "global_step": position.global_step,
        "best": json.dumps(position.best),
        "rng": rng_state(),
        "config": json.dumps(ctx.config.to_dict()),
    })


def finish(ctx: Run, position: Position) -> None:
    ctx.log({"event": "done", "step": position.global_step, "best": position.best})
    plot_curves(ctx.log_path, ctx.out / "curves.png")
    overall = position.best["overall"]
    print(f"redseg-train: done; best hold-out {ctx.config.validation.select} "
          f"{overall['score'] if overall else float('nan'):.4f} -> {ctx.out / 'best.safetensors'}", file=sys.stderr)


def _save(path: Path, model, config: TrainConfig, thresholds, provenance: dict, metrics: dict) -> None:
    ck = config.checkpoint
    save_checkpoint(path, unwrap(model), thresholds=thresholds, name=ck.name, version=ck.version,
                    provenance=provenance, metrics=metrics, half=ck.half)


def load_best(model, path: Path, device: torch.device) -> None:
    if not path.is_file():
        return  # no hold-out: keep the last weights
    state = load_checkpoint(path, device="cpu", fold=False).model.state_dict()
    unwrap(model).load_state_dict(state)
    unwrap(model).to(device)


def _truncate_log(path: Path, global_step: int) -> None:
    """Drop the log records written after the state we resume from (they will be redone)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= global_step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


if __name__ == "__main__":
    raise SystemExit(main())
