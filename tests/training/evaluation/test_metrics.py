import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from training.evaluation.metrics import IDRID_THRESHOLDS, LEVELS, PRAccumulator


def quantised_scores(rng, n):
    return rng.integers(0, LEVELS, n) / (LEVELS - 1)


def accumulate(scores, labels):
    acc = PRAccumulator()
    acc.update(scores, labels)
    return acc


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(20_000) < 0.05
    scores = np.clip(quantised_scores(rng, labels.size) * 0.7 + labels * 0.3 * rng.random(labels.size), 0, 1)
    scores = np.rint(scores * (LEVELS - 1)) / (LEVELS - 1)
    assert accumulate(scores, labels).average_precision() == pytest.approx(average_precision_score(labels, scores), abs=1e-9)


def test_average_precision_with_heavy_ties_matches_sklearn():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, 5000) / 4
    labels = rng.random(5000) < scores * 0.3
    assert accumulate(scores, labels).average_precision() == pytest.approx(average_precision_score(labels, scores), abs=1e-9)


def direct_idrid_auc(scores, labels):
    """Independent reference: PR at each of the 33 thresholds (high to low) from the raw pixels."""
    points = []
    for t in IDRID_THRESHOLDS[::-1]:
        called = scores >= t
        if called.any():
            points.append((np.sum(called & labels) / labels.sum(), np.sum(called & labels) / called.sum()))
    points.insert(0, (0.0, points[0][1]))
    area = 0.0
    for (r0, p0), (r1, p1) in zip(points, points[1:]):
        area += (r1 - r0) * (p0 + p1) / 2
    return area


def test_idrid_auc_matches_direct_computation():
    rng = np.random.default_rng(3)
    labels = rng.random(30_000) < 0.02
    scores = np.clip(rng.random(labels.size) * 0.8 + labels * 0.25, 0, 1)
    scores = np.rint(scores * (LEVELS - 1)) / (LEVELS - 1)
    assert accumulate(scores, labels).auc_pr_idrid() == pytest.approx(direct_idrid_auc(scores, labels), abs=1e-9)


@pytest.mark.parametrize("positive, negative", [(0.9, 0.1), (1.0, 0.0), (0.6, 0.4)])
def test_perfect_classifier_scores_one(positive, negative):
    labels = np.zeros(10_000, bool)
    labels[:100] = True
    acc = accumulate(np.where(labels, positive, negative), labels)
    assert acc.auc_pr_idrid() == pytest.approx(1.0, abs=1e-6)
    assert acc.average_precision() == pytest.approx(1.0)
    assert acc.at_threshold(0.5) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_uninformative_and_inverted_classifiers():
    rng = np.random.default_rng(0)
    labels = rng.random(200_000) < 0.1
    random_acc = accumulate(rng.random(labels.size), labels)
    assert random_acc.auc_pr_idrid() == pytest.approx(0.1, abs=0.02)
    assert random_acc.average_precision() == pytest.approx(0.1, abs=0.01)
    near_constant = accumulate(0.49 + 0.001 * rng.random(labels.size), labels)
    assert near_constant.auc_pr_idrid() == pytest.approx(0.1, abs=0.01)
    inverted = accumulate(np.where(labels, 0.1, 0.9), labels)
    assert inverted.average_precision() == pytest.approx(0.1, abs=1e-3)
    assert inverted.auc_pr_idrid() < 0.1


def test_constant_score_gives_prevalence_precision():
    labels = np.zeros(1000, bool)
    labels[:50] = True
    acc = accumulate(np.full(1000, 0.5), labels)
    assert acc.average_precision() == pytest.approx(0.05)
    assert acc.auc_pr_idrid() == pytest.approx(0.05)
    assert acc.at_threshold(0.5)["precision"] == pytest.approx(0.05)
    assert acc.at_threshold(0.75) == {"precision": 1.0, "recall": 0.0, "f1": 0.0}


def test_merge_equals_single_update_and_memory_is_fixed():
    rng = np.random.default_rng(1)
    chunks = [(rng.random((40, 50)), rng.random((40, 50)) < 0.1) for _ in range(5)]
    single = PRAccumulator()
    single.update(np.concatenate([c[0].ravel() for c in chunks]), np.concatenate([c[1].ravel() for c in chunks]))
    merged = PRAccumulator()
    for scores, labels in chunks:
        part = PRAccumulator()
        part.update(scores, labels)
        merged.merge(part)
    assert np.array_equal(single.positive, merged.positive) and np.array_equal(single.negative, merged.negative)
    assert merged.positive.shape == merged.negative.shape == (LEVELS,)
    assert merged.num_pixels == 5 * 40 * 50


def test_valid_mask_excludes_pixels():
    scores = np.array([0.9, 0.9, 0.1, 0.1])
    labels = np.array([True, False, False, True])
    acc = PRAccumulator()
    acc.update(scores, labels, valid=np.array([True, False, True, False]))
    assert acc.num_pixels == 2 and acc.average_precision() == 1.0


def test_best_f1_point():
    labels = np.array([True] * 10 + [False] * 90)
    scores = np.concatenate([np.full(10, 0.8), np.full(5, 0.7), np.full(85, 0.2)])
    best = accumulate(scores, labels).best_f1()
    assert 0.7 < best["threshold"] <= 0.8
    assert best["f1"] == pytest.approx(1.0)
