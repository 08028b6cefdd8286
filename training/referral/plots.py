"""The referral score's figures for the model card: ROC curves and the score by retinopathy grade."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from training.figures import save_figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(
    path: Path,
    labels: np.ndarray,
    curves: Mapping[str, tuple[np.ndarray, float]],
    operating_point: tuple[float, float] | None = None,
    title: str = "Referable DR (grade >= 2)",
) -> Path:
    """One ROC curve per named score (scores, AUC); the first is drawn bold. ``operating_point`` is (1 - spec, sens)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=110)
    for index, (name, (scores, auc)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, lw=2.2 if index == 0 else 1.1, label=f"{name} (AUC {auc:.3f})")
    if operating_point is not None:
        ax.plot(*operating_point, "ko", label="operating point (cross-validated)")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=7.5)
    return save_figure(fig, path)


def plot_score_by_grade(path: Path, grades: np.ndarray, scores: np.ndarray, operating_point: float) -> Path:
    """Box plot of the out-of-fold score for each retinopathy grade, with the operating point."""
    plt = _pyplot()
    present = sorted(set(grades.tolist()))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.boxplot([scores[grades == g] for g in present], showfliers=True)
    ax.set_xticks(range(1, len(present) + 1), [f"{g}\n(n={int((grades == g).sum())})" for g in present])
    rng = np.random.default_rng(0)
    for position, grade in enumerate(present, start=1):
        values = scores[grades == grade]
        ax.scatter(position + rng.uniform(-0.15, 0.15, len(values)), values, s=6, alpha=0.35, color="tab:blue")
    ax.axhline(operating_point, color="tab:red", ls="--", lw=1, label=f"operating point {operating_point:.2f}")
    ax.set(xlabel="IDRiD retinopathy grade (>= 2 referable)", ylabel="referral score (out of fold)", ylim=(-0.02, 1.02))
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path)
