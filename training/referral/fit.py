"""Fitting and cross-validating the referral score on graded photographs' screening features.

Every figure reported for the score comes from photographs the scoring model was not fitted on:
out-of-fold scores of repeated stratified k-fold cross-validation, with the operating point of
each fold chosen on that fold's training photographs alone (by an inner cross-validation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from model.screening.features import feature_lesion
from model.screening.referral import ReferralScore, log_features

DEFAULT_FEATURES = (
    "MA_count_op", "MA_area_op", "HE_count_op", "HE_area_op",
    "MA_count_p90", "HE_count_p90", "MA_soft", "HE_soft",
    "EX_count_op", "EX_area_op", "EX_soft", "EX_count_macula", "EX_area_macula",
    "SE_count_op", "SE_area_op", "SE_soft",
)  # fmt: skip
"""The score's features; a model's score takes those of the lesions it segments (``default_features``)."""
TARGET_SENSITIVITY = 0.92
"""Sensitivity aimed for on the fitting photographs: a screening programme's first duty is not to miss
referable eyes. At 0.92 the four-lesion default model's score keeps 0.918 out of fold with specificity
0.863 (docs/exudates.md); the red-lesion scores of earlier versions aimed for 0.85."""
REGULARISATION = 1.0
"""Inverse L2 strength of the logistic regression on standardised features."""

Rows = Sequence[Mapping[str, float]]


def default_features(lesions: Sequence[str]) -> list[str]:
    """The ``DEFAULT_FEATURES`` of the lesions a model segments."""
    return [name for name in DEFAULT_FEATURES if feature_lesion(name) in lesions]


def feature_unit(name: str) -> float:
    """The scale below which a feature counts as about zero in ``log1p(value / unit)``."""
    if "_area_" in name:
        return 1e-5  # a share of the field of view: 1e-5 is about one microaneurysm
    if name.endswith("_soft"):
        return 1e-4
    return 1.0


def fit_score(rows: Rows, labels: np.ndarray, features: Sequence[str], operating_point: float = 0.5) -> ReferralScore:
    """A logistic referral score fitted on all of ``rows``."""
    units = [feature_unit(name) for name in features]
    logs = log_features(rows, features, units)
    mean, scale = logs.mean(axis=0), logs.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    model = LogisticRegression(C=REGULARISATION, max_iter=1000).fit((logs - mean) / scale, labels)
    return ReferralScore(
        features=list(features),
        units=units,
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=model.coef_[0].tolist(),
        intercept=float(model.intercept_[0]),
        operating_point=operating_point,
    )


def threshold_for_sensitivity(scores: np.ndarray, labels: np.ndarray, target: float = TARGET_SENSITIVITY) -> float:
    """The highest threshold whose sensitivity (scores >= threshold among positives) reaches ``target``."""
    positives = np.sort(scores[labels == 1])[::-1]
    needed = max(1, int(np.ceil(target * len(positives))))
    return float(positives[needed - 1])


def out_of_fold_scores(rows: Rows, labels: np.ndarray, features: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """Each photograph's score from a model fitted on the other folds."""
    scores = np.empty(len(labels))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels):
        model = fit_score([rows[i] for i in train], labels[train], features)
        scores[test] = model.scores([rows[i] for i in test])
    return scores


@dataclass(frozen=True)
class CrossValidation:
    scores: np.ndarray
    """Per photograph, the mean of its out-of-fold scores over the repeats."""
    referred: np.ndarray
    """(repeats, n): the call of each repeat's fold model at that fold's own operating point."""
    fold_operating_points: list[float]


def cross_validate(
    rows: Rows, labels: np.ndarray, features: Sequence[str], folds: int = 5, repeats: int = 5, seed: int = 0,
    target: float = TARGET_SENSITIVITY,
) -> CrossValidation:
    """Repeated stratified k-fold: out-of-fold scores, and calls at operating points chosen inside each fold."""
    n = len(labels)
    scores = np.zeros((repeats, n))
    referred = np.zeros((repeats, n), dtype=bool)
    points = []
    for repeat in range(repeats):
        split = StratifiedKFold(folds, shuffle=True, random_state=seed + repeat).split(np.zeros(n), labels)
        for train, test in split:
            train_rows = [rows[i] for i in train]
            inner = out_of_fold_scores(train_rows, labels[train], features, folds, seed + 1000 + repeat)
            point = threshold_for_sensitivity(inner, labels[train], target)
            model = fit_score(train_rows, labels[train], features)
            scores[repeat, test] = model.scores([rows[i] for i in test])
            referred[repeat, test] = scores[repeat, test] >= point
            points.append(point)
    return CrossValidation(scores.mean(axis=0), referred, points)


def cross_validated_rule(values: np.ndarray, labels: np.ndarray, folds: int = 5, repeats: int = 5, seed: int = 0,
                         target: float = TARGET_SENSITIVITY) -> np.ndarray:
    """(repeats, n) calls of ``value >= N``, N chosen in each fold on its training photographs for the target sensitivity."""
    referred = np.zeros((repeats, len(labels)), dtype=bool)
    for repeat in range(repeats):
        split = StratifiedKFold(folds, shuffle=True, random_state=seed + repeat).split(np.zeros(len(labels)), labels)
        for train, test in split:
            referred[repeat, test] = values[test] >= threshold_for_sensitivity(values[train], labels[train], target)
    return referred


def sensitivity_specificity(labels: np.ndarray, referred: np.ndarray) -> tuple[float, float]:
    """Over one or several rows of calls (each row one pass over every photograph)."""
    referred = np.atleast_2d(referred)
    positives = np.broadcast_to(labels == 1, referred.shape)
    return float(referred[positives].mean()), float((~referred[~positives]).mean())


def bootstrap_interval(
    labels: np.ndarray, statistic, *arrays: np.ndarray, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of ``statistic(labels, *arrays)`` over photographs resampled with replacement
    (for a statistic giving several numbers, the lows and the highs, each a list)."""
    rng = np.random.default_rng(seed)
    values = []
    n = len(labels)
    while len(values) < resamples:
        pick = rng.integers(0, n, n)
        if labels[pick].min() == labels[pick].max():
            continue  # a resample with one class has no ROC
        values.append(statistic(labels[pick], *(a[..., pick] for a in arrays)))
    low, high = np.percentile(values, [2.5, 97.5], axis=0)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low.tolist(), high.tolist())


def auc_with_interval(labels: np.ndarray, scores: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "auc_ci95": list(bootstrap_interval(labels, roc_auc_score, scores, resamples=resamples, seed=seed)),
    }


def rule_figures(labels: np.ndarray, referred: np.ndarray, resamples: int = 2000, seed: int = 0) -> dict:
    """Sensitivity and specificity of yes/no calls, each with a bootstrap 95% interval."""
    sensitivity, specificity = sensitivity_specificity(labels, referred)
    lows, highs = bootstrap_interval(labels, sensitivity_specificity, referred, resamples=resamples, seed=seed)
    return {
        "sensitivity": sensitivity,
        "sensitivity_ci95": [lows[0], highs[0]],
        "specificity": specificity,
        "specificity_ci95": [lows[1], highs[1]],
    }
