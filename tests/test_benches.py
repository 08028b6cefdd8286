"""Every bench under bench/ runs its ``main`` once, on a tiny checkpoint and a small image, so a
bench that the code has left behind fails here rather than on the day someone needs it.

What they measure is not checked (a tiny network on a shared machine says nothing about targets),
only that each runs to the end and prints its report. The service and soak benches start their own
``redseg-serve`` on 127.0.0.1 and send it a handful of requests.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import cv2
import pytest
import yaml

from model.inference import TileSettings
from tests.service.helpers import SAMPLE, tiny_checkpoint
from tests.training.fake_idrid import make_fake_idrid
from training.data.idrid import DEFAULT_HOLDOUT


def bench(name: str):
    return importlib.import_module(f"bench.{name}")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny checkpoint (width 1/16, working scale 256) and the sample photograph shrunk to 480x319."""
    folder = tmp_path_factory.mktemp("bench")
    image = folder / "small.jpg"
    photo = cv2.imread(str(SAMPLE))
    cv2.imwrite(str(image), cv2.resize(photo, (480, 319), interpolation=cv2.INTER_AREA))
    return {"checkpoint": tiny_checkpoint(folder / "tiny.safetensors"), "image": image}


@pytest.mark.slow  # about 5 s, most of it importing MONAI
def test_inference(files, capsys):
    bench("inference").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]), "--repeats", "1"])
    assert "(c) MONAI sliding window" in capsys.readouterr().out


def test_branches(files, tmp_path, capsys):
    four = tiny_checkpoint(tmp_path / "four.safetensors", exudates=True)
    bench("branches").main(["--checkpoint", str(four), "--image", str(files["image"]), "--repeats", "1"])
    out = capsys.readouterr().out
    assert "forward" in out and "predict_probabilities" in out and "MA, HE, EX, SE" in out


def test_tta(files, capsys):
    bench("tta").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]), "--repeats", "1",
                       "--modes", "none,flips"])
    assert "tta flips" in capsys.readouterr().out


def test_tiles(files, capsys):
    bench("tiles").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]), "--repeats", "1",
                         "--old", "128"])
    out = capsys.readouterr().out
    assert "| torch | 128 |" in out and f"| torch | {TileSettings.tile_size} | 1 |" in out


def test_response(files, capsys):
    bench("response").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]), "--repeats", "1"])
    out = capsys.readouterr().out
    assert "now: render + zip" in out and "DICOM SEG, FRACTIONAL" in out


def test_precision(files, tmp_path, capsys):
    data = make_fake_idrid(tmp_path / "idrid", names=DEFAULT_HOLDOUT, with_he=DEFAULT_HOLDOUT[:2])
    bench("precision").main(["--checkpoint", str(files["checkpoint"]), "--data", str(data),
                             "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert f"{len(DEFAULT_HOLDOUT)} hold-out images" in out and "bf16/fp32" in out


def test_fov_consistency(files, tmp_path, capsys):
    """Its crops take up to 600 pixels from each side: the fake photograph is 1400x800."""
    data = make_fake_idrid(tmp_path / "idrid", names=("IDRiD_05",), size=(800, 1400))
    bench("fov_consistency").main(["--checkpoint", str(files["checkpoint"]), "--data", str(data)])
    out = capsys.readouterr().out
    assert out.count("\n") == 2 * 7 and "disc      resized 640x426" in out


@pytest.mark.slow
def test_service(files, capsys):
    bench("service").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]),
                           "--requests", "1", "--concurrent-requests", "2", "--clients", "2"])
    out = capsys.readouterr().out
    assert "(2/2 answered 200, 0 lost)" in out


@pytest.mark.slow
def test_heap(files, capsys):
    bench("heap").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]), "--requests", "2",
                        "--pause-s", "1.2"])
    out = capsys.readouterr().out
    assert "| (c) handed back |" in out and "(w) kept warm / (c) handed back:" in out


@pytest.mark.slow
def test_soak(files, tmp_path):
    out = tmp_path / "soak"
    status = bench("soak").main(["--checkpoint", str(files["checkpoint"]), "--image", str(files["image"]),
                                 "--requests", "3", "--full-size-every", "3", "--warm-up", "0", "--block", "3",
                                 "--rest-s", "0", "--clients", "1", "--out", str(out)])
    assert status in (0, 1)  # 1: RSS grew 5 % or more, which three requests cannot settle
    summary = json.loads((out / "soak.json").read_text())["summary"]
    assert summary["statuses"] == {"200": 3}
    assert (out / "soak.png").is_file()


def test_training(tmp_path, capsys):
    root = make_fake_idrid(tmp_path / "idrid", names=("IDRiD_01", "IDRiD_02", "IDRiD_03"), with_he=("IDRiD_01",))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny",
        "data": {"root": str(root), "holdout": ["IDRiD_03"], "cache_dir": str(tmp_path / "cache")},
        "model": {"width": 0.0625, "batch_norm": True, "working_long_side": 144},
        "stages": [{"name": "warmup", "loss": "balanced_bce", "iterations": 4, "batch_size": 2, "crop_size": 32}],
    }))
    assert bench("training").main(["--config", str(config), "--repeats", "1", "--images", "2", "--device", "cpu",
                                   "--threads", "1"]) == 0
    assert "ratio (a)/(r)" in capsys.readouterr().out
