import json

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import LESIONS, RedSegConfig
from model.network import RedSeg
from tests.training.fake_idrid import make_fake_idrid
from training.evaluation.calibrate import (
    BINS,
    CENTRES,
    best_f1_threshold,
    calibrated_centres,
    cross_fitted,
    fit_platt,
    logit_histograms,
    main,
    reliability,
)


def synthetic_counts(slope: float, intercept: float, pixels_per_bin: float = 1e5) -> np.ndarray:
    """(2, BINS) background/lesion counts whose lesion share in each logit bin is sigmoid(slope z + intercept)."""
    truth = 1 / (1 + np.exp(-(slope * CENTRES + intercept)))
    total = np.where(np.abs(CENTRES) < 8, pixels_per_bin, 0)
    return np.stack([total * (1 - truth), total * truth])


def test_platt_fit_recovers_the_true_scaling():
    platt = fit_platt(synthetic_counts(0.45, -3.2))
    assert platt.slope == pytest.approx(0.45, abs=1e-3) and platt.intercept == pytest.approx(-3.2, abs=1e-3)


def test_calibration_error_is_near_zero_once_calibrated():
    counts = synthetic_counts(0.45, -3.2)
    raw = reliability(counts, calibrated_centres(None))
    calibrated = reliability(counts, calibrated_centres(fit_platt(counts)))
    assert raw["ece"] > 0.1 and calibrated["ece"] < 0.002
    assert len(calibrated["pixels"]) == 15 and sum(calibrated["pixels"]) == pytest.approx(counts.sum())


def test_cross_fitting_keeps_every_pixel_and_best_f1_is_a_readable_threshold():
    per_image = np.stack([synthetic_counts(0.45, -3.2, 1e4 * (i + 1)) for i in range(4)])
    counts, probabilities = cross_fitted(per_image, folds=2)
    assert counts.shape == (2, 2 * BINS) and counts.sum() == pytest.approx(per_image.sum())
    assert reliability(counts, probabilities)["ece"] < 0.002
    best = best_f1_threshold(per_image.sum(axis=0), calibrated_centres(fit_platt(per_image.sum(axis=0))))
    assert best["threshold"] == round(best["threshold"], 2) and 0 < best["f1"] <= 1


def test_histograms_count_only_the_valid_pixels():
    probabilities = np.array([[[0.5, 0.9], [0.1, 1.0]], [[0.0, 0.2], [0.3, 0.4]]], dtype=np.float32)
    masks = np.array([[[1, 0], [0, 1]], [[0, 0], [1, 0]]], dtype=bool)
    valid = np.array([[True, True], [True, False]])
    counts = logit_histograms(probabilities, masks, valid)
    assert counts[0, 1].sum() == 1 and counts[0, 0].sum() == 2 and counts[1, 1].sum() == 1
    assert counts[0, 1, BINS // 2] == 1  # p = 0.5 is logit 0, the middle bin


def test_cli_writes_the_calibration_into_a_copy(tmp_path, capsys):
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=128)).eval()
    original = save_checkpoint(tmp_path / "tiny.safetensors", model, thresholds={"MA": 0.4, "HE": 0.6},
                               referral={"fitted": "on raw maps"}, macular_oedema={"fitted": "on raw maps too"})
    data = make_fake_idrid(tmp_path / "idrid", names=("IDRiD_01", "IDRiD_02"), with_he=("IDRiD_01", "IDRiD_02"))
    written = tmp_path / "calibrated.safetensors"
    assert main(["--checkpoint", str(original), "--write", str(written), "--data", str(data), "--images",
                 "IDRiD_01,IDRiD_02", "--folds", "2", "--tta", "hflip", "--out", str(tmp_path / "report"),
                 "--no-progress", "--device", "cpu"]) == 0
    calibrated = load_checkpoint(written)
    assert set(calibrated.calibration.modes) == {"none", "hflip"}
    assert calibrated.raw_thresholds == {"MA": 0.4, "HE": 0.6}
    assert all(t == round(t, 2) for t in calibrated.thresholds.values())
    assert load_checkpoint(original).calibration is None
    assert calibrated.referral is None and "referral score" in capsys.readouterr().err  # stale: fit it again
    assert calibrated.macular_oedema is None and load_checkpoint(original).macular_oedema == {"fitted": "on raw maps too"}
    report = json.loads((tmp_path / "report" / "calibration.json").read_text())
    assert report["images"] == ["IDRiD_01", "IDRiD_02"]
    assert {"raw", "cross_fitted", "in_sample", "best_f1", "platt"} <= set(report["modes"]["hflip"][LESIONS[0]])
    assert (tmp_path / "report" / "reliability.png").stat().st_size > 1000
