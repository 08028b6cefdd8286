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
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import LESIONS
from model.inference import TileSettings
from training.cache import WorkingScaleCache
from training.config import ConfigError, load_config
from training.dataset import AugmentConfig, IterationBatchSampler, PatchDataset
from training.engine import (
    build_model,
    build_optimizer,
    build_scheduler,
    load_state,
    rng_state,
    save_state,
    set_rng_state,
    train_step,
    unwrap,
    validate,
)
from training.idrid import DEFAULT_ROOT, list_samples, split_holdout
from training.losses import DeepSupervision, build_loss
from training.plots import plot_curves

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="redseg-train", description=__doc__.split("\n\n")[0])
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
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("redseg-train: --device cuda but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except (ConfigError, ValueError) as exc:
        print(f"redseg-train: {exc}", file=sys.stderr)
        return 2
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(args.device or config["device"], local_rank)
    threads = args.threads or config["threads"]
    if threads:
        torch.set_num_threads(int(threads))
    distributed = world_size > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        return run(config, args, device, rank, world_size)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


def run(config: dict, args, device: torch.device, rank: int, world_size: int) -> int:
    main_process = rank == 0
    out = Path(args.out or Path("runs") / config["name"])
    state_path = out / "state.pt"
    log_path = out / "log.jsonl"
    ckpt_dir = out / "checkpoints"
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(exist_ok=True)

    resume = None
    if args.resume:
        if not state_path.is_file():
            raise SystemExit(f"redseg-train: --resume but no training state at {state_path}")
        resume = load_state(state_path)
    elif main_process and state_path.exists():
        raise SystemExit(f"redseg-train: {out} already holds a run; pass --resume to continue it, or another --out")

    if main_process:
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if resume is not None:
            _truncate_log(log_path, resume["global_step"])
        else:
            log_path.write_text("")

    def log(record: dict) -> None:
        if main_process:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    torch.manual_seed(config["seed"])
    data = config["data"]
    root = Path(data["root"]) if data["root"] else DEFAULT_ROOT
    samples = list_samples(root, data["split"])
    if data["images"] is not None:
        wanted = set(data["images"])
        unknown = wanted - {s.name for s in samples}
        if unknown:
            raise SystemExit(f"redseg-train: data.images names not in {root}: {sorted(unknown)}")
        samples = [s for s in samples if s.name in wanted]
    train_samples, holdout_samples = split_holdout(samples, data["holdout"])
    cache = WorkingScaleCache(config["model"]["working_long_side"], data["cache_dir"])
    show = main_process and not args.no_progress
    train_items = cache.get_all(train_samples, progress=show)
    holdout_items = cache.get_all(holdout_samples, progress=show)

    model = build_model(config["model"], config["init"] if resume is None else None).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    commit = git_commit()
    tiles = TileSettings(
        tile_size=config["validation"]["tile_size"], min_overlap=config["validation"]["min_overlap"],
        batch_size=config["validation"]["batch_size"], fov_mask=True, amp=config["amp"],
    )
    select = config["validation"]["select"]
    stages = config["stages"]
    best = {"overall": None}
    first_stage, first_step, global_step = 0, 0, 0
    if resume is not None:
        unwrap(model).load_state_dict(resume["model"])
        first_stage, first_step, global_step = resume["stage_index"], resume["step"], resume["global_step"]
        best = json.loads(resume["best"])
        set_rng_state(resume["rng"])
        if main_process and json.loads(resume["config"]) != config:
            print(f"redseg-train: warning: {args.config} differs from the config {state_path} was written with; "
                  "continuing with the new one", file=sys.stderr)
        log({"event": "resume", "stage": stages[min(first_stage, len(stages) - 1)]["name"], "step": global_step})
    if main_process:
        print(f"redseg-train: {len(train_items)} training / {len(holdout_items)} hold-out images, device {device}, "
              f"world size {world_size}, out {out}", file=sys.stderr)

    last_plot = time.monotonic()
    for stage_index in range(first_stage, len(stages)):
        stage = stages[stage_index]
        iterations = int(stage["iterations"])
        start = first_step if stage_index == first_stage else 0
        resuming_stage = resume is not None and stage_index == first_stage and start > 0
        if stage_index > 0 and start == 0 and stage.get("init_from", "last") == "best":
            _load_best(model, ckpt_dir / f"{stages[stage_index - 1]['name']}-best.safetensors", device)
        net = model
        if world_size > 1:
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        criterion = DeepSupervision(
            build_loss(stage["loss"], stage["loss_options"], iterations),
            side_weights=config["deep_supervision"]["side_weights"],
            fused_weight=config["deep_supervision"]["fused_weight"],
            lesion_weights=config["deep_supervision"]["lesion_weights"],
        )
        optimizer = build_optimizer(model, stage["optimizer"])
        scheduler = build_scheduler(optimizer, iterations, stage["schedule"])
        if resuming_stage:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
        dataset = PatchDataset(
            train_items, stage["crop_size"], data["lesion_share"], AugmentConfig.from_dict(config["augment"]),
            seed=config["seed"] * 1000 + stage_index,
        )
        sampler = IterationBatchSampler(start, iterations, stage["batch_size"], rank, world_size)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=int(data["workers"]),
                            pin_memory=device.type == "cuda", persistent_workers=False)
        progress = None
        if show:
            from tqdm import tqdm

            progress = tqdm(total=iterations, initial=start, desc=f"{stage['name']} ({stage['loss']})", unit="it",
                            dynamic_ncols=True)
        stage_best = best.get(stage["name"])
        running, count, tick = 0.0, 0, time.perf_counter()
        step = start
        for images, masks in loader:
            loss, parts = train_step(net, criterion, optimizer, images, masks, step, device, config["amp"])
            scheduler.step()
            step += 1
            global_step += 1
            running += loss
            count += 1
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
            if step % int(config["log_every"]) == 0 or step == iterations:
                seconds = (time.perf_counter() - tick) / count
                log({"event": "train", "stage": stage["name"], "stage_step": step, "step": global_step,
                     "loss": running / count, "lr": scheduler.get_last_lr()[0], "s_per_it": seconds,
                     "parts": parts, **({"k": criterion.loss.last_k} if stage["loss"] == "topk" else {})})
                running, count, tick = 0.0, 0, time.perf_counter()
            if step % int(stage["val_every"]) == 0 or step == iterations:
                if main_process:
                    v_tick = time.perf_counter()
                    metrics = validate(unwrap(model), holdout_items, device, tiles) if holdout_items else None
                    record = {"event": "val", "stage": stage["name"], "stage_step": step, "step": global_step,
                              "seconds": time.perf_counter() - v_tick}
                    if metrics is not None:
                        record["metrics"] = metrics
                        score = metrics[select]
                        provenance = {"config": config, "stage": stage["name"], "stage_step": step,
                                      "global_step": global_step, "git": commit, "world_size": world_size,
                                      "holdout": data["holdout"]}
                        thresholds = {lesion: metrics[lesion]["threshold"] for lesion in LESIONS}
                        if stage_best is None or score > stage_best["score"]:
                            stage_best = {"score": score, "step": global_step, "stage_step": step}
                            best[stage["name"]] = stage_best
                            _save(ckpt_dir / f"{stage['name']}-best.safetensors", model, config, thresholds, provenance, metrics)
                        if best["overall"] is None or score > best["overall"]["score"]:
                            best["overall"] = {"score": score, "step": global_step, "stage": stage["name"], "stage_step": step}
                            _save(out / "best.safetensors", model, config, thresholds, provenance, metrics)
                        if step == iterations:
                            _save(ckpt_dir / f"{stage['name']}-last.safetensors", model, config, thresholds, provenance, metrics)
                        record["best"] = best
                        if progress is not None:
                            progress.write(f"[{stage['name']} {step}/{iterations}] hold-out AP "
                                           + " ".join(f"{l} {metrics[l]['average_precision']:.4f}" for l in LESIONS)
                                           + f"  AUC_PR " + " ".join(f"{l} {metrics[l]['auc_pr_idrid']:.4f}" for l in LESIONS)
                                           + f"  ({select} best {best['overall']['score']:.4f} @ {best['overall']['stage']} {best['overall']['stage_step']})")
                    elif step == iterations:
                        _save(ckpt_dir / f"{stage['name']}-last.safetensors", model, config, None,
                              {"config": config, "stage": stage["name"], "global_step": global_step, "git": commit}, {})
                    log(record)
                    if time.monotonic() - last_plot > 300:
                        plot_curves(log_path, out / "curves.png")
                        last_plot = time.monotonic()
                if world_size > 1:
                    dist.barrier()
                tick = time.perf_counter()
            if global_step % int(config["checkpoint"]["state_every"]) == 0 or step == iterations:
                if main_process:
                    done = step == iterations
                    save_state(state_path, {
                        "model": unwrap(model).state_dict(),
                        "optimizer": None if done else optimizer.state_dict(),
                        "scheduler": None if done else scheduler.state_dict(),
                        "stage_index": stage_index + 1 if done else stage_index,
                        "step": 0 if done else step,
                        "global_step": global_step,
                        "best": json.dumps(best),
                        "rng": rng_state(),
                        "config": json.dumps(config),
                    })
            if args.stop_at is not None and global_step >= args.stop_at:
                if progress is not None:
                    progress.close()
                raise SystemExit(75)
        if progress is not None:
            progress.close()
        if world_size > 1:
            dist.barrier()
    if main_process:
        log({"event": "done", "step": global_step, "best": best})
        plot_curves(log_path, out / "curves.png")
        print(f"redseg-train: done; best hold-out {select} {best['overall']['score'] if best['overall'] else float('nan'):.4f}"
              f" -> {out / 'best.safetensors'}", file=sys.stderr)
    return 0


def _save(path: Path, model, config: dict, thresholds, provenance: dict, metrics: dict) -> None:
    ck = config["checkpoint"]
    save_checkpoint(path, unwrap(model), thresholds=thresholds, name=ck["name"], version=str(ck["version"]),
                    provenance=provenance, metrics=metrics, half=bool(ck["half"]))


def _load_best(model, path: Path, device: torch.device) -> None:
    if not path.is_file():
        return  # no hold-out: keep the last weights
    state = load_checkpoint(path, device="cpu").model.state_dict()
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
