import csv
import json

import numpy as np
import pytest
import torch

import training.evaluation.evaluate
from model.checkpoint import save_checkpoint
from model.config import LESIONS, RedSegConfig
from model.inference import TileSettings
from model.network import RedSeg
from tests.training.fake_idrid import make_fake_idrid
from training.evaluation.evaluate import evaluate_samples, main
from training.data.idrid import list_samples, load_sample


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=256)).eval()
    return save_checkpoint(tmp_path / "tiny.safetensors", model, thresholds={"MA": 0.4, "HE": 0.6}, name="tiny")


@pytest.fixture
def data(tmp_path):
    return make_fake_idrid(tmp_path / "idrid")


def test_cli_writes_metrics_csv_and_plots(tmp_path, checkpoint, data, capsys):
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(checkpoint), "--data", str(data), "--split", "train", "--out", str(out),
                 "--no-progress", "--device", "auto"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"]["name"] == "tiny" and report["data"]["images"] == ["IDRiD_01", "IDRiD_02"]
    for lesion in LESIONS:
        figures = report["lesions"][lesion]
        for key in ("threshold", "precision", "recall", "f1", "auc_pr_idrid", "average_precision", "positive_pixels"):
            assert key in figures
        assert set(figures["best_f1"]) == {"threshold", "precision", "recall", "f1"}
    assert report["lesions"]["MA"]["threshold"] == 0.4 and report["lesions"]["HE"]["threshold"] == 0.6
    assert report["lesions"]["HE"]["positive_pixels"] == sum(r["HE"]["positive_pixels"] for r in report["per_image"])
    assert report["per_image"][1]["HE"]["positive_pixels"] == 0
    assert report["per_image"][1]["HE"]["average_precision"] is None
    assert "without_fov" not in report
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert [(r["image"], r["lesion"]) for r in rows] == [("IDRiD_01", "MA"), ("IDRiD_01", "HE"), ("IDRiD_02", "MA"), ("IDRiD_02", "HE")]
    assert (out / "pr_curves.png").stat().st_size > 10_000
    assert "AUC_PR" in capsys.readouterr().out


def test_cli_compare_fov_and_image_selection_on_the_bundled_model(tmp_path, checkpoint, data, monkeypatch):
    monkeypatch.setattr(training.evaluation.evaluate, "DEFAULT_CHECKPOINT", checkpoint)  # no --checkpoint: the bundled model
    out = tmp_path / "eval"
    assert main(["--data", str(data), "--out", str(out), "--images", "IDRiD_02", "--compare-fov", "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"]["checkpoint"] == str(checkpoint) and report["model"]["name"] == "tiny"
    assert report["tiles"] == {"tile_size": TileSettings.tile_size, "batch_size": TileSettings.batch_size}
    assert report["data"]["images"] == ["IDRiD_02"]
    assert set(report["without_fov"]) == set(LESIONS)
    assert report["without_fov"]["MA"]["positive_pixels"] == report["lesions"]["MA"]["positive_pixels"]
    assert (out / "pr_curves_without_fov.png").exists()


@pytest.mark.parametrize("extra", [["--holdout"], ["--images", "IDRiD_77"], ["--split", "test"]])
def test_cli_bad_selection_is_a_clear_error(tmp_path, checkpoint, data, extra, capsys):
    assert main(["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(tmp_path / "o"), *extra]) == 2
    assert "redseg-evaluate: error:" in capsys.readouterr().err


def test_cli_missing_checkpoint_is_a_clear_error(tmp_path, data, capsys):
    assert main(["--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "nope.safetensors" in capsys.readouterr().err


def test_ground_truth_predictor_scores_one_and_fov_zeroing_is_measured(data):
    samples = list_samples(data)[:1]
    masks = load_sample(samples[0])[1]

    def oracle(image):
        return np.where(masks, 0.9, 0.1).astype(np.float32)

    result = evaluate_samples(samples, oracle, {"MA": 0.5, "HE": 0.5}, compare_fov=True, progress=False)
    for lesion in LESIONS:
        assert result.pooled[lesion].auc_pr_idrid() == pytest.approx(1.0)
        assert result.without_fov[lesion].average_precision() == pytest.approx(1.0)
        assert result.pooled[lesion].negative[0] > 0 and result.without_fov[lesion].negative[0] == 0


def test_prediction_of_the_wrong_shape_is_an_error(data):
    with pytest.raises(ValueError, match="does not match"):
        evaluate_samples(list_samples(data), lambda image: np.zeros((2, 5, 5), np.float32), {"MA": 0.5, "HE": 0.5},
                         progress=False)
