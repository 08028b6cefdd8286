"""A full-width training run that fits a lent GPU's wall-time budget (issue 10), in one command.

    python campaign/gpu-lent/plan.py --budget-s 330 --out /tmp/gpu/run --export $OUT [--pack .pack/idrid-working.npz]

1. Takes torchvision's VGG16 ImageNet weights from ``--weights`` or torch hub's cache: found, it trains
   configs/gpu-imagenet.yaml from them; not found, configs/gpu-scratch.yaml.
2. Runs the config's first stage for a few dozen iterations to measure seconds per iteration, one
   validation and the start-up.
3. Scales every stage's length (keeping their shares) so that training, validations included, ends
   inside the budget, and runs it with redseg-train under a hard timeout.
4. Exports the run's log, config and curves, and its best hold-out checkpoint in float16 cut into
   parts of at most 15 MiB (``best16.safetensors.part0`` ...; join them with ``cat``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.checkpoint import update_metadata  # noqa: E402

PROBE_ITERATIONS = 60
VALIDATIONS_PER_STAGE = 4
PART_BYTES = 15 * 2**20


def find_imagenet_weights(given: str | None) -> Path | None:
    """``given``, else torchvision's VGG16(-BN) file in torch hub's cache (run.sh searches the disk and passes it)."""
    if given:
        return Path(given)
    found = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob("vgg16*.pth"))
    return found[0] if found else None


def base_config(weights: Path | None, pack: str, workers: int) -> dict:
    name = "gpu-imagenet" if weights else "gpu-scratch"
    config = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    config["data"] |= {"packed": pack, "workers": workers}
    if weights:
        config["init"] = str(weights)
        config["model"]["batch_norm"] = "_bn" in weights.name
    return config


def train(config: dict, out: Path, timeout_s: float) -> float:
    """Run redseg-train on ``config`` into ``out``; returns the wall seconds it took."""
    out.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    started = time.monotonic()
    command = [sys.executable, "-m", "training.train", "--config", str(path), "--out", str(out), "--no-progress"]
    try:
        subprocess.run(command, cwd=ROOT, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        print(f"plan: {out.name} stopped at its {timeout_s:.0f} s limit", flush=True)
    return time.monotonic() - started


def probe(config: dict, out: Path, iterations: int) -> dict:
    """Seconds per iteration (last log window), per validation, and the start-up of the first stage."""
    stage = config["stages"][0] | {"iterations": iterations, "val_every": iterations}
    probe_config = copy.deepcopy(config) | {"stages": [stage], "log_every": max(1, iterations // 3)}
    wall = train(probe_config, out, timeout_s=240)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    per_it = [r["s_per_it"] for r in records if r["event"] == "train"][-1]
    validation = [r["seconds"] for r in records if r["event"] == "val"][-1]
    return {"s_per_it": per_it, "val_s": validation, "startup_s": max(0.0, wall - iterations * per_it - validation),
            "wall_s": wall}


def budgeted(config: dict, measured: dict, seconds: float) -> dict:
    """``config`` with its stages scaled to train within ``seconds``, validating a few times per stage."""
    stages = config["stages"]
    overhead = measured["startup_s"] + len(stages) * (VALIDATIONS_PER_STAGE * measured["val_s"] + 5)
    total = max(len(stages) * VALIDATIONS_PER_STAGE, int((seconds - overhead) / measured["s_per_it"]))
    planned = sum(int(s["iterations"]) for s in stages)
    scaled = copy.deepcopy(config)
    for stage in scaled["stages"]:
        share = int(stage["iterations"]) / planned
        stage["iterations"] = max(VALIDATIONS_PER_STAGE, int(total * share))
        stage["val_every"] = math.ceil(stage["iterations"] / VALIDATIONS_PER_STAGE)
        if stage["loss"] == "topk":
            stage.setdefault("loss_options", {})["step"] = max(1, stage["iterations"] // 4)
        if "warmup" in stage.get("schedule", {}):
            stage["schedule"]["warmup"] = min(int(stage["schedule"]["warmup"]), stage["iterations"] // 10)
    return scaled


def export_half_parts(checkpoint: Path, out: Path, stem: str) -> int:
    """``checkpoint`` in float16 as ``<stem>.safetensors.part0`` ... in ``out`` (``cat`` joins them); the part count."""
    half = update_metadata(checkpoint, out=out / f"{stem}.safetensors", half=True)
    data = half.read_bytes()
    half.unlink()
    count = math.ceil(len(data) / PART_BYTES)
    for index in range(count):
        (out / f"{stem}.safetensors.part{index}").write_bytes(data[index * PART_BYTES:(index + 1) * PART_BYTES])
    return count


def export(run: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("log.jsonl", "config.yaml", "curves.png"):
        if (run / name).is_file():
            shutil.copy(run / name, out / name)
    best = run / "best.safetensors"
    if not best.is_file():
        print("plan: no best checkpoint to export", flush=True)
        return
    parts = export_half_parts(best, out, "best16")
    print(f"plan: best checkpoint in float16, in {parts} parts", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, required=True, help="wall seconds for probe plus training")
    parser.add_argument("--out", type=Path, required=True, help="the run folder")
    parser.add_argument("--export", type=Path, required=True, help="where the log, config, curves and checkpoint parts go")
    parser.add_argument("--pack", default=".pack/idrid-working.npz")
    parser.add_argument("--workers", type=int, default=min(12, max(1, (os.cpu_count() or 4) - 2)))
    parser.add_argument("--weights", help="torchvision's VGG16(-BN) ImageNet weights (default: looked for)")
    parser.add_argument("--probe-iterations", type=int, default=PROBE_ITERATIONS)
    parser.add_argument("--tiny", action="store_true", help="a dry run on a CPU: width 1/8, batches of 2 crops of 96")
    args = parser.parse_args()
    started = time.monotonic()
    weights = find_imagenet_weights(args.weights)
    print(f"plan: ImageNet weights: {weights or 'none found, training from random initialisation'}", flush=True)
    config = base_config(weights, args.pack, args.workers)
    if args.tiny:
        config["model"]["width"], config["init"] = 0.125, "none"
        config["stages"] = [s | {"crop_size": 96, "batch_size": 2} for s in config["stages"]]
    measured = probe(config, args.out.parent / "probe", args.probe_iterations)
    remaining = args.budget_s - (time.monotonic() - started)
    plan = budgeted(config, measured, remaining)
    print(f"plan: measured {json.dumps(measured)}; {remaining:.0f} s left; stages "
          f"{[(s['name'], s['iterations']) for s in plan['stages']]}", flush=True)
    train(plan, args.out, timeout_s=remaining + 45)
    export(args.out, args.export)


if __name__ == "__main__":
    main()
