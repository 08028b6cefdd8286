"""The trainer end to end on a tiny fake IDRiD folder: outputs, checkpoints, exact resume, DDP, the CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from model.checkpoint import load_checkpoint
from model.fov import idrid_fov_diameter
from training.engine import load_state
from training.train import main

from tests.training.fake_idrid import REAL_IDRID, make_fake_idrid


PROJECT = Path(__file__).resolve().parents[2]
NAMES = ("IDRiD_01", "IDRiD_02", "IDRiD_03")


def _config(tmp_path: Path, **stage_overrides) -> Path:
    root = tmp_path / "idrid"
    if not root.exists():
        make_fake_idrid(root, names=NAMES, size=(96, 144), with_he=("IDRiD_01", "IDRiD_03"))
    stage = {"batch_size": 2, "crop_size": 32, "val_every": 3, "optimizer": {"name": "adam", "lr": 1e-3}}
    stage.update(stage_overrides)
    config = {
        "name": "tiny",
        "data": {"root": str(root), "holdout": ["IDRiD_03"], "cache_dir": str(tmp_path / "cache")},
        "model": {"width": 0.0625, "batch_norm": True, "working_long_side": 144},
        "validation": {"tile_size": 64, "min_overlap": 16},
        "checkpoint": {"state_every": 2},
        "log_every": 1,
        "stages": [
            {"name": "warmup", "loss": "balanced_bce", "iterations": 3, **stage},
            {"name": "topk", "loss": "topk", "iterations": 3, "loss_options": {"key": 5, "k_min": 20, "step": 1},
             "init_from": "best", **stage},
            {"name": "fnfp", "loss": "fnfp", "iterations": 2, **stage, "optimizer": {"name": "sgd", "lr": 1e-2}},
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _variant(config_path: Path, name: str, edit) -> Path:
    """A copy of a run config, named ``name``, changed in place by ``edit(config)``."""
    config = yaml.safe_load(config_path.read_text())
    edit(config)
    path = config_path.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict:
    return load_state(out / "state.pt")["model"]


def test_run_writes_log_plot_and_loadable_checkpoints(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "run"
    assert main(["--config", str(config), "--out", str(out), "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert [r["stage"] for r in train] == ["warmup"] * 3 + ["topk"] * 3 + ["fnfp"] * 2
    assert [r["step"] for r in train] == list(range(1, 9))
    assert all(r["k"] for r in train if r["stage"] == "topk")
    val = [r for r in records if r["event"] == "val"]
    assert {"MA", "HE", "mean_ap"} <= set(val[0]["metrics"])
    assert (out / "curves.png").stat().st_size > 1000
    best = load_checkpoint(out / "best.safetensors")
    assert best.config.width == 0.0625 and set(best.thresholds) == {"MA", "HE"}
    assert best.config.fov_diameter == idrid_fov_diameter(144)  # trained on IDRiD's disc scale, served the same
    assert best.provenance["config"]["name"] == "tiny" and "git" in best.provenance
    assert best.metrics["mean_ap"] == max(r["metrics"]["mean_ap"] for r in val)
    for stage in ("warmup", "topk", "fnfp"):
        assert (out / "checkpoints" / f"{stage}-best.safetensors").is_file()
        assert (out / "checkpoints" / f"{stage}-last.safetensors").is_file()
    state = load_state(out / "state.pt")
    assert state["stage_index"] == 3 and state["global_step"] == 8
    # a finished run is not overwritten by accident
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--out", str(out), "--no-progress"])


def test_resume_after_a_kill_gives_identical_weights(tmp_path):
    config = _config(tmp_path)
    straight = tmp_path / "straight"
    assert main(["--config", str(config), "--out", str(straight), "--no-progress"]) == 0
    killed = tmp_path / "killed"
    # killed after global step 5 (mid top-k stage): the state on disk is from step 4, step 5 is lost
    with pytest.raises(SystemExit) as stop:
        main(["--config", str(config), "--out", str(killed), "--no-progress", "--stop-at", "5"])
    assert stop.value.code == 75
    assert load_state(killed / "state.pt")["global_step"] == 4
    assert main(["--config", str(config), "--out", str(killed), "--no-progress", "--resume"]) == 0
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(l)["step"] for l in (killed / "log.jsonl").read_text().splitlines()
             if json.loads(l)["event"] == "train"]
    assert steps == list(range(1, 9))  # the lost step's records were dropped and redone


@pytest.mark.slow  # two training processes, about 9 s
def test_ddp_two_cpu_processes_on_gloo(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "training.train", "--config", str(config), "--out", str(out), "--no-progress", "--device", "cpu"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_state(out / "state.pt")
    assert state["global_step"] == 8
    assert load_checkpoint(out / "best.safetensors").provenance["world_size"] == 2


@pytest.mark.slow  # redseg-train on real IDRiD photographs, about 6 s
@pytest.mark.skipif(not REAL_IDRID.is_dir(), reason="needs ../shared/data/idrid")
def test_cli_on_the_smoke_config(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    out = tmp_path / "smoke"
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", "configs/smoke.yaml", "--out", str(out), "--no-progress"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best hold-out" in result.stderr
    assert load_checkpoint(out / "best.safetensors").config.width == 0.0625


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("stages: [{loss: dice}]\n")
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == (f"redseg-train: error: {path}: stages[0].loss: expected one of 'balanced_bce', "
                                       "'topk', 'fnfp', got 'dice'\n")


def test_missing_idrid_is_one_line_naming_the_layout_and_the_download(tmp_path):
    config = yaml.safe_load(_config(tmp_path).read_text())
    config["data"]["root"] = str(tmp_path / "nowhere")
    path = tmp_path / "nowhere.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "training.train", "--config", str(path), "--out", str(tmp_path / "run"),
         "--no-progress"],
        cwd=PROJECT, env={**os.environ, "PYTHONPATH": str(PROJECT)}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("redseg-train: error: ")
    assert "1. Original Images/a. Training Set/IDRiD_NN.jpg" in lines[0]
    assert "https://idrid.grand-challenge.org/" in lines[0]


def test_names_not_in_the_data_are_a_config_error(tmp_path, capsys):
    config = yaml.safe_load(_config(tmp_path).read_text())
    config["data"]["holdout"] = ["IDRiD_99"]
    path = tmp_path / "holdout.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["--config", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("redseg-train: error: data.holdout: hold-out names not in the data")


def test_resume_reads_the_state_of_a_run_folder(tmp_path, capsys):
    """The state's config (plain JSON) reads back as the same config: no 'differs' warning on resume."""
    config = _config(tmp_path)
    out = tmp_path / "run"
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--out", str(out), "--no-progress", "--stop-at", "2"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["stages"][0]["iterations"] == 3 and saved["model"]["fov_diameter"] == idrid_fov_diameter(144)
    capsys.readouterr()
    assert main(["--config", str(out / "config.yaml"), "--out", str(out), "--no-progress", "--resume"]) == 0
    assert "differs" not in capsys.readouterr().err
    provenance = load_checkpoint(out / "best.safetensors").provenance
    assert provenance["config"] == saved and provenance["holdout"] == ["IDRiD_03"]


def test_a_run_can_start_from_a_checkpoint_of_the_same_network(tmp_path):
    first = tmp_path / "first"
    assert main(["--config", str(_config(tmp_path)), "--out", str(first), "--no-progress"]) == 0
    config = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    config["init"] = str(first / "best.safetensors")
    config["stages"] = [{"name": "tune", "loss": "fnfp", "iterations": 1, "batch_size": 2, "crop_size": 32,
                         "optimizer": {"name": "sgd", "lr": 0.0, "momentum": 0.0}}]
    tuned = tmp_path / "tune.yaml"
    tuned.write_text(yaml.safe_dump(config))
    assert main(["--config", str(tuned), "--out", str(tmp_path / "second"), "--no-progress"]) == 0
    expected = load_checkpoint(first / "best.safetensors", fold=False).model.state_dict()
    for name, value in _weights(tmp_path / "second").items():
        if value.is_floating_point() and "running" not in name:  # batch-norm statistics move in train mode
            torch.testing.assert_close(value, expected[name], msg=name)
    config["model"]["width"] = 0.125
    tuned.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="init checkpoint"):
        main(["--config", str(tuned), "--out", str(tmp_path / "third"), "--no-progress"])


def test_a_four_lesion_model_trains_on_all_four_losses_and_keeps_their_thresholds(tmp_path):
    make_fake_idrid(tmp_path / "idrid", names=NAMES, size=(96, 144), with_he=("IDRiD_01", "IDRiD_03"), exudates=True)
    def four_lesions(config):
        config["model"] |= {"ex_stages": [2, 3], "se_stages": [3, 4], "exudate_hidden": 4}
        config["deep_supervision"] = {"lesion_weights": {"EX": 2.0}}
        config["stages"] = config["stages"][:1]

    out = tmp_path / "run"
    assert main(["--config", str(_variant(_config(tmp_path), "four", four_lesions)), "--out", str(out), "--no-progress"]) == 0
    records = _records(out)
    parts = next(r["parts"] for r in records if r["event"] == "train")
    assert {"MA/fused", "HE/fused", "EX/fused", "EX/side2", "SE/side2"} <= set(parts)
    val = next(r for r in records if r["event"] == "val")["metrics"]
    assert val["EX"]["positive_pixels"] > 0 and val["SE"]["positive_pixels"] > 0
    best = load_checkpoint(out / "best.safetensors")
    assert best.config.lesions == ("MA", "HE", "EX", "SE") and set(best.thresholds) == {"MA", "HE", "EX", "SE"}
