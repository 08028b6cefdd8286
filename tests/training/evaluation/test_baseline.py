import json

import cv2
import numpy as np
import pytest

from tests.training.fake_idrid import REAL_IDRID, make_fake_idrid
from training.evaluation.baseline import BaselineSettings, line_kernel, line_tophat, main, red_lesion_scores
from training.data.idrid import IMAGES_DIR, list_samples, load_sample
from training.evaluation.metrics import PRAccumulator


def test_line_kernel_is_a_centred_line():
    for angle in (0, 45, 90, 135):
        kernel = line_kernel(15, angle)
        ys, xs = np.nonzero(kernel)
        assert kernel.shape == (15, 15) and kernel[7, 7] == 1
        assert np.hypot(ys.max() - ys.min(), xs.max() - xs.min()) == pytest.approx(14, abs=0.6)


def test_line_tophat_keeps_blobs_and_removes_vessels():
    darkness = np.zeros((120, 120), np.float32)
    cv2.line(darkness, (5, 20), (115, 90), 1.0, 3)
    cv2.circle(darkness, (30, 95), 4, 1.0, -1)
    tophat = line_tophat(darkness, 21, 12)
    assert tophat[95, 30] > 0.9
    assert tophat[55, 55] < 0.1 and tophat[20:90, 5:115][darkness[20:90, 5:115] > 0].mean() < 0.2


def test_scores_are_probabilities_at_the_original_resolution():
    image = np.full((300, 450, 3), (160, 70, 20), np.uint8)
    cv2.circle(image, (200, 150), 5, (90, 25, 10), -1)
    scores = red_lesion_scores(image, BaselineSettings(long_side=200))
    assert scores.shape == (2, 300, 450) and scores.dtype == np.float32
    assert 0 <= scores.min() and scores.max() <= 1
    assert scores[:, 150, 200].min() > scores[:, 50, 100].max()


@pytest.mark.skipif(not (REAL_IDRID / IMAGES_DIR).is_dir(), reason="IDRiD data not in ../shared/data/idrid")
def test_haemorrhage_ap_clearly_above_prevalence_on_a_real_image():
    sample = next(s for s in list_samples(REAL_IDRID) if s.name == "IDRiD_10")
    image, masks = load_sample(sample)
    scores = red_lesion_scores(image)
    acc = PRAccumulator()
    acc.update(scores[1], masks[1])
    prevalence = acc.num_positive / acc.num_pixels
    assert acc.average_precision() > 5 * prevalence


def test_cli_on_a_fake_folder(tmp_path):
    data = make_fake_idrid(tmp_path / "idrid")
    assert main(["--data", str(data), "--split", "train", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["model"]["method"].startswith("classical")
    assert report["lesions"]["HE"]["positive_pixels"] > 0 and report["per_image"][1]["HE"]["positive_pixels"] == 0
    assert (tmp_path / "out" / "pr_curves.png").exists()


def test_cli_bad_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--holdout"]) == 2
    assert "redseg-baseline: error:" in capsys.readouterr().err
