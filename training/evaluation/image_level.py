"""Per-image detection: does the photograph hold the lesion? ROC AUC over a per-image score.

The score is the photograph's **highest probability** for the lesion (inside the field of view, as
served): thresholding it at t answers "does the served mask at t have any region?", so the ROC
curve is that of the served mask's yes/no as its threshold sweeps. Two counts are reported as
further scores: the served regions at the operating threshold, and the lesions at probability
>= 0.9 counted as the answer counts them (microaneurysms only when small and round,
``model.screening.features``). One confident false dot decides the highest probability; a count
needs several, which is what holds up on another camera (docs/other-cameras.md). A photograph
holds the lesion where its ground truth marks any pixel (for soft maps, at the agreement asked for).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SCORE = "max_probability"
SCORE_TEXT = "the photograph's highest probability for the lesion (the served mask at t has a region iff it is >= t)"
SECOND_SCORE = "served_regions"
SECOND_SCORE_TEXT = "the number of served regions at the operating threshold"
THIRD_SCORE = "lesions_p90"
THIRD_SCORE_TEXT = "the number of lesions at probability >= 0.9, counted as the answer counts them"
SCORE_LABELS = {SCORE: "highest probability", SECOND_SCORE: "served regions", THIRD_SCORE: "lesions at p >= 0.9"}
"""Each per-image score's short name, as summaries and plots print it."""


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance that a positive photograph scores above a negative one,
    ties counting one half (Mann-Whitney). NaN where either class is missing."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    positive, negative = scores[labels], scores[~labels]
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    above = (positive[:, None] > negative[None, :]).sum()
    ties = (positive[:, None] == negative[None, :]).sum()
    return float((above + 0.5 * ties) / (positive.size * negative.size))


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) calling positive at score >= each distinct score,
    from (0, 0) to (1, 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    cuts = np.unique(scores)[::-1]
    tpr = [0.0] + [float(np.mean(scores[labels] >= c)) if labels.any() else np.nan for c in cuts]
    fpr = [0.0] + [float(np.mean(scores[~labels] >= c)) if (~labels).any() else np.nan for c in cuts]
    return np.array(fpr), np.array(tpr)


def image_level_report(rows: Sequence[dict], threshold: float) -> dict:
    """Per-image figures of one lesion from per-image rows (``holds_lesion``, ``max_probability``,
    ``served_regions``, ``lesions_p90``): the three ROC AUCs, and sensitivity and specificity at the operating
    threshold, where a photograph is called positive when its served mask has a region."""
    labels = np.array([bool(r["holds_lesion"]) for r in rows])
    called = np.array([r["served_regions"] > 0 for r in rows])
    positives, negatives = int(labels.sum()), int((~labels).sum())
    return {
        "score": SCORE_TEXT,
        "images": len(rows),
        "images_with_lesion": positives,
        "roc_auc": roc_auc([r[SCORE] for r in rows], labels),
        "second_score": SECOND_SCORE_TEXT,
        "roc_auc_second_score": roc_auc([r[SECOND_SCORE] for r in rows], labels),
        "third_score": THIRD_SCORE_TEXT,
        "roc_auc_third_score": roc_auc([r[THIRD_SCORE] for r in rows], labels),
        "at_threshold": {
            "threshold": float(threshold),
            "rule": "positive where the served mask has at least one region",
            "sensitivity": float(called[labels].mean()) if positives else float("nan"),
            "specificity": float((~called[~labels]).mean()) if negatives else float("nan"),
            "true_positives": int((called & labels).sum()),
            "false_positives": int((called & ~labels).sum()),
        },
    }
