"""redseg-screen: grading data, cross-validated referral score, report, feature cache and the checkpoint's score."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from model import RedSeg, RedSegConfig, load_checkpoint, save_checkpoint
from model.checkpoint import model_digest
from model.screening.referral import ReferralScore
from training.referral import features as referral_features
from training.referral import fit as referral_fit
from training.referral.grading import IMAGES_DIR, LABELS_CSV, list_graded
from training.data.idrid import DatasetLayoutError
from training.referral.screen import main
from training.referral.fit import cross_validate, sensitivity_specificity, threshold_for_sensitivity

GRADES = [0, 0, 1, 0, 2, 3, 0, 4, 2, 0, 3, 1]
OEDEMA = [0, 0, 0, 1, 2, 2, 0, 2, 0, 0, 1, 0]
"""IDRiD's risk of macular oedema (0, 1, 2) of the fake photographs, where a test gives it."""


def make_fake_grading(root: Path, grades=GRADES, oedema=None) -> Path:
    images = root / IMAGES_DIR
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [["Image name", "Retinopathy grade", "Risk of macular edema "]]
    for number, (grade, risk) in enumerate(zip(grades, oedema or [0] * len(grades)), start=1):
        name = f"IDRiD_{number:03d}"
        image = np.zeros((80, 120, 3), np.uint8)
        cv2.circle(image, (60, 40), 38, (30, 70, 160), -1)
        for _ in range(3 * grade):
            cv2.circle(image, (int(rng.integers(35, 85)), int(rng.integers(15, 65))), 2, (10, 20, 60), -1)
        cv2.imwrite(str(images / f"{name}.jpg"), image)
        rows.append([name, str(grade), str(risk)])
    labels = root / LABELS_CSV
    labels.parent.mkdir(parents=True)
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


def synthetic_rows(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    rows = [
        {name: float(rng.poisson(2 + 10 * label)) for name in referral_fit.DEFAULT_FEATURES} for label in labels
    ]
    return rows, labels


def test_grading_layout(tmp_path):
    graded = list_graded(make_fake_grading(tmp_path / "g"))
    assert [g.grade for g in graded] == GRADES and graded[4].referable and not graded[2].referable
    with pytest.raises(DatasetLayoutError):
        list_graded(tmp_path / "nowhere")


def test_threshold_for_sensitivity():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.2])
    labels = np.array([1, 1, 1, 1, 0, 0])
    assert threshold_for_sensitivity(scores, labels, 0.75) == 0.7
    assert sensitivity_specificity(labels, scores >= 0.7) == (0.75, 1.0)


def test_cross_validation_never_scores_a_photograph_with_a_model_fitted_on_it(monkeypatch):
    rows, labels = synthetic_rows(60)
    fit = referral_fit.fit_score

    class Spy:
        def __init__(self, fit_rows, *args, **kwargs):
            self.seen = {id(row) for row in fit_rows}
            self.model = fit(fit_rows, *args, **kwargs)

        def scores(self, scored):
            assert not self.seen & {id(row) for row in scored}
            return self.model.scores(scored)

    monkeypatch.setattr(referral_fit, "fit_score", Spy)
    cv = cross_validate(rows, labels, referral_fit.DEFAULT_FEATURES, folds=3, repeats=2)
    assert cv.referred.shape == (2, 60) and len(cv.fold_operating_points) == 6
    sensitivity, _ = sensitivity_specificity(labels, cv.referred)
    assert sensitivity > 0.7
    assert ((cv.scores > 0.5) == labels).mean() > 0.9  # the features separate the classes


def test_redseg_screen_reports_writes_the_score_and_reuses_the_cache(tmp_path, monkeypatch):
    data = make_fake_grading(tmp_path / "grading", oedema=OEDEMA)
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=128)).eval()
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", model, thresholds={"MA": 0.5, "HE": 0.5})
    out, cache = tmp_path / "report", tmp_path / "cache"
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--cache", str(cache)]
    args += ["--folds", "2", "--repeats", "1", "--bootstrap", "50", "--no-progress", "--features", "HE_soft,MA_soft"]
    assert main(args + ["--write"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["score"]["auc"] <= 1 and len(metrics["score"]["auc_ci95"]) == 2
    assert set(metrics["rules"]) >= {"any HE", "MA count >= 5"} and "HE count" in metrics["single_features"]
    assert "not a grade" in metrics["disclaimer"]
    with (out / "per_image.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(GRADES)
    assert (out / "roc.png").stat().st_size > 1000 and (out / "score_by_grade.png").stat().st_size > 1000
    stored = ReferralScore.from_dict(load_checkpoint(checkpoint).referral)
    assert load_checkpoint(checkpoint).macular_oedema is None  # a red-lesion model states no risk of macular oedema
    assert stored.features == ["HE_soft", "MA_soft"]
    assert stored.operating_point == metrics["score"]["operating_point_final"]
    assert stored.validation["roc_auc"] == round(metrics["score"]["auc"], 4)

    def no_inference(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(referral_features, "photograph_features", no_inference)
    assert main(args) == 0  # the score written into the checkpoint keeps its features cache valid
    assert json.loads((out / "metrics.json").read_text())["score"] == metrics["score"]


def test_redseg_screen_fits_and_stores_a_macular_oedema_risk_score_for_a_model_with_hard_exudates(tmp_path, capsys):
    data = make_fake_grading(tmp_path / "grading", oedema=OEDEMA)
    assert [image.macular_oedema for image in list_graded(data)] == OEDEMA
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=128, ex_stages=(3, 4, 5), se_stages=(3, 4, 5))).eval()
    checkpoint = save_checkpoint(tmp_path / "four.safetensors", model, thresholds=dict.fromkeys(("MA", "HE", "EX", "SE"), 0.5))
    digest, out, cache = model_digest(checkpoint), tmp_path / "report", tmp_path / "cache"
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--out", str(out), "--cache", str(cache), "--folds", "2",
            "--repeats", "1", "--bootstrap", "50", "--no-progress"]
    assert main(args + ["--features", "HE_soft,MA_soft,EX_soft,EX_count_op", "--write"]) == 0
    figures = json.loads((out / "metrics.json").read_text())["macular_oedema"]
    assert figures["target"] == "risk of macular oedema (IDRiD grade > 0)" and figures["positives"] == 5
    assert 0 <= figures["auc"] <= 1 and {"sensitivity", "specificity", "auc_ci95"} <= set(figures)
    loaded = load_checkpoint(checkpoint)
    stored = ReferralScore.from_dict(loaded.macular_oedema)
    assert stored.to_dict() == figures["fitted_score"] and stored.features == ["HE_soft", "MA_soft", "EX_soft", "EX_count_op"]
    assert stored.operating_point == figures["operating_point_final"] != loaded.referral["operating_point"]
    assert stored.validation["target"] == figures["target"] and stored.validation["roc_auc"] == round(figures["auc"], 4)
    assert stored.validation["data"].endswith("12 photographs, 5 with a risk of macular oedema")
    assert stored.validation["sensitivity"] == round(figures["sensitivity"], 4) and "cross-validation" in stored.validation["method"]
    assert ReferralScore.from_dict(loaded.referral).validation["target"].startswith("referable diabetic retinopathy")
    assert model_digest(checkpoint) == digest  # the features cache and the OpenVINO IR stay valid
    assert "stored with operating point" in (out / "table.md").read_text()
    assert "macular-oedema risk score written" in capsys.readouterr().out

    assert main(args + ["--features", "HE_soft,MA_soft", "--write"]) == 0  # red lesions alone cannot see macular oedema
    assert json.loads((out / "metrics.json").read_text())["macular_oedema"]["fitted_score"] is None  # measured, not offered
    assert load_checkpoint(checkpoint).macular_oedema is None and model_digest(checkpoint) == digest


def test_redseg_screen_rejects_a_missing_folder_and_unknown_features(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "grading layout" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--features", "HE_colour"])


@pytest.mark.slow  # converts the tiny network to OpenVINO (about 10 s on 2 cores)
def test_redseg_screen_measures_the_score_through_an_openvino_engine_in_its_own_cache(tmp_path):
    pytest.importorskip("openvino")
    data = make_fake_grading(tmp_path / "grading")
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=128)).eval()
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", model, thresholds={"MA": 0.5, "HE": 0.5})
    cache = tmp_path / "cache"
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--cache", str(cache), "--folds", "2",
            "--repeats", "1", "--bootstrap", "50", "--no-progress", "--features", "HE_soft,MA_soft"]
    assert main(args + ["--out", str(tmp_path / "torch")]) == 0
    assert main(args + ["--out", str(tmp_path / "ov"), "--backend", "openvino-bf16"]) == 0
    files = sorted(path.name for path in cache.iterdir())
    assert len(files) == 2 and sum("openvino-bf16" in name for name in files) == 1
    ir = next((tmp_path / "m.openvino").glob("fp32-*.xml"))
    assert any(name.endswith(f"-{ir.stem}.jsonl") for name in files)  # a new IR recipe gets new features
    for name in files:
        assert len((cache / name).read_text().splitlines()) == len(GRADES)
