"""Pixel-pooled precision/recall metrics from score histograms (bounded memory on any number of images)."""

from __future__ import annotations

import numpy as np

LEVELS = 65536
"""Scores are quantised to 16 bits (p * 65535), exactly as the 16-bit probability PNGs store them."""

IDRID_THRESHOLDS = np.linspace(0.0, 1.0, 33)
"""The IDRiD challenge's 33 equally spaced thresholds 0, 1/32, ..., 1."""

PUBLISHED_AUC_PR = {
    "Red-Seg": {"MA": 0.4839, "HE": 0.5695},
    "Red-Seg one-stage": {"MA": 0.4669, "HE": 0.5916},
    "L-Seg": {"MA": 0.4627, "HE": 0.6374},
    "HED": {"MA": 0.4271, "HE": 0.5084},
    "VRT (IDRiD winner)": {"MA": 0.4951, "HE": 0.6804},
    "IDRiD leaderboard best (about)": {"EX": 0.88, "SE": 0.71},
}
"""Published AUC_PR on the official IDRiD test split, for context only: the Red-Seg paper's table for MA and HE,
the challenge leaderboard's best entries (rounded, as quoted in issue 25) for hard and soft exudates."""


class PRAccumulator:
    """Histograms of the scores of positive and negative pixels, pooled over images."""

    def __init__(self) -> None:
        self.positive = np.zeros(LEVELS, dtype=np.int64)
        self.negative = np.zeros(LEVELS, dtype=np.int64)

    def update(self, probability: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> None:
        levels = np.rint(np.clip(probability, 0.0, 1.0) * (LEVELS - 1)).astype(np.int64).ravel()
        target = np.asarray(target, dtype=bool).ravel()
        if valid is not None:
            keep = np.asarray(valid, dtype=bool).ravel()
            levels, target = levels[keep], target[keep]
        self.positive += np.bincount(levels[target], minlength=LEVELS)
        self.negative += np.bincount(levels[~target], minlength=LEVELS)

    def merge(self, other: PRAccumulator) -> None:
        self.positive += other.positive
        self.negative += other.negative

    @property
    def num_positive(self) -> int:
        return int(self.positive.sum())

    def _counts_at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True and false positives when a pixel is called lesion at score >= threshold."""
        tp_from = np.concatenate([np.cumsum(self.positive[::-1])[::-1], [0]])
        fp_from = np.concatenate([np.cumsum(self.negative[::-1])[::-1], [0]])
        index = np.ceil(np.asarray(thresholds, dtype=np.float64) * (LEVELS - 1) - 1e-9).astype(np.int64)
        index = np.clip(index, 0, LEVELS)
        return tp_from[index], fp_from[index]

    def precision_recall(self, thresholds) -> tuple[np.ndarray, np.ndarray]:
        """Precision (1 where nothing is called lesion) and recall at each threshold."""
        tp, fp = self._counts_at(np.atleast_1d(thresholds))
        called = tp + fp
        precision = np.where(called > 0, tp / np.maximum(called, 1), 1.0)
        recall = tp / max(self.num_positive, 1)
        return precision, recall

    def at_threshold(self, threshold: float) -> dict[str, float]:
        precision, recall = (float(v[0]) for v in self.precision_recall([threshold]))
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}

    def auc_pr_idrid(self) -> float:
        """Area under the PR curve of the 33 IDRiD thresholds (trapezoids over recall).

        Points join in the order of decreasing threshold (recall never decreases along it).
        A threshold that calls no pixel has no precision and gives no point; the curve starts
        at recall 0 with the precision of the highest threshold that calls some pixel. (Taking
        precision 1 there instead would credit near-constant outputs, e.g. an untrained network
        at 0.49 everywhere, with an AUC of about 0.5.)
        """
        thresholds = IDRID_THRESHOLDS[::-1]
        tp, fp = self._counts_at(thresholds)
        called = tp + fp > 0
        if self.num_positive == 0 or not called.any():
            return float("nan")
        precision = tp[called] / (tp[called] + fp[called])
        recall = tp[called] / self.num_positive
        precision, recall = np.insert(precision, 0, precision[0]), np.insert(recall, 0, 0.0)
        return float(np.trapezoid(precision, recall))

    def average_precision(self) -> float:
        """Continuous average precision: sum over score levels of (R_n - R_{n-1}) * P_n."""
        if self.num_positive == 0:
            return float("nan")
        tp = np.cumsum(self.positive[::-1])
        fp = np.cumsum(self.negative[::-1])
        has_positive = self.positive[::-1] > 0
        precision = tp / np.maximum(tp + fp, 1)
        recall_gain = self.positive[::-1] / self.num_positive
        return float(np.sum(recall_gain[has_positive] * precision[has_positive]))

    def best_f1_threshold(self) -> float:
        """The threshold (a multiple of 1/1024) with the highest F1."""
        thresholds = np.linspace(0.0, 1.0, 1025)
        precision, recall = self.precision_recall(thresholds)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1))])

    def best_f1(self) -> dict[str, float]:
        """The best-F1 threshold with its precision, recall and F1."""
        threshold = self.best_f1_threshold()
        return {"threshold": threshold, **self.at_threshold(threshold)}

    @property
    def num_pixels(self) -> int:
        return int(self.positive.sum() + self.negative.sum())

    def summary(self, threshold: float) -> dict[str, float]:
        return {
            "threshold": float(threshold),
            **self.at_threshold(threshold),
            "auc_pr_idrid": self.auc_pr_idrid(),
            "average_precision": self.average_precision(),
            "positive_pixels": self.num_positive,
        }
