"""Per-image detection ROC on cases worked out by hand."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluation.image_level import image_level_report, roc_auc, roc_curve


def test_roc_auc_by_hand():
    # Positives 0.9 and 0.3, negatives 0.8 and 0.1: of the 4 pairs, 0.9>0.8, 0.9>0.1, 0.3>0.1 are right.
    assert roc_auc([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0]) == 0.75
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5  # a tie counts one half
    assert roc_auc([0.1, 0.9], [1, 0]) == 0.0
    assert np.isnan(roc_auc([0.1, 0.9], [1, 1])) and np.isnan(roc_auc([], []))


@pytest.mark.parametrize("seed", range(3))
def test_roc_auc_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(60) < 0.4
    scores = np.round(rng.random(60) + labels * 0.3, 1)  # rounded: many ties
    assert roc_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_roc_curve_steps_from_corner_to_corner():
    fpr, tpr = roc_curve([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and tpr.tolist() == [0, 0.5, 0.5, 1, 1]


def test_report_at_the_operating_threshold():
    rows = [
        {"holds_lesion": True, "max_probability": 0.9, "served_regions": 3, "lesions_p90": 2},
        {"holds_lesion": True, "max_probability": 0.2, "served_regions": 0, "lesions_p90": 1},
        {"holds_lesion": False, "max_probability": 0.4, "served_regions": 1, "lesions_p90": 0},
        {"holds_lesion": False, "max_probability": 0.1, "served_regions": 0, "lesions_p90": 1},
    ]
    report = image_level_report(rows, 0.3)
    assert report["images"] == 4 and report["images_with_lesion"] == 2
    assert report["roc_auc"] == 0.75  # 0.9 beats both negatives, 0.2 beats 0.1 only
    assert report["roc_auc_second_score"] == 0.625  # 3 > 1, 3 > 0, 0 < 1, 0 = 0 (a half)
    assert report["roc_auc_third_score"] == 0.875  # 2 > 0, 2 > 1, 1 > 0, 1 = 1 (a half)
    at = report["at_threshold"]
    assert (at["sensitivity"], at["specificity"], at["true_positives"], at["false_positives"]) == (0.5, 0.5, 1, 1)
    assert "highest probability" in report["score"]
