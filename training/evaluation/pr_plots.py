"""Precision-recall curves of pooled pixels as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from training.evaluation.metrics import IDRID_THRESHOLDS, PUBLISHED_AUC_PR, PRAccumulator
from training.figures import save_figure

COLOURS = {"MA": "tab:red", "HE": "tab:blue", "EX": "tab:olive", "SE": "tab:purple"}
CURVE_THRESHOLDS = np.linspace(0.0, 1.0, 1025)


def plot_pr_curves(
    path: str | Path,
    accumulators: Mapping[str, PRAccumulator],
    thresholds: Mapping[str, float],
    title: str = "Precision-recall, pooled pixels",
    published: Mapping[str, Mapping[str, float]] = PUBLISHED_AUC_PR,
    reference: str = "Red-Seg",
) -> Path:
    """One figure, one curve per lesion: the dense curve, the 33 IDRiD threshold points, the operating point,
    and the ``reference`` method's published AUC_PR as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    for lesion, acc in accumulators.items():
        colour = COLOURS.get(lesion)
        precision, recall = acc.precision_recall(CURVE_THRESHOLDS)
        ax.plot(recall, precision, color=colour, lw=1.5,
                label=f"{lesion}: AUC_PR {acc.auc_pr_idrid():.4f} (33 thr), AP {acc.average_precision():.4f}")
        precision, recall = acc.precision_recall(IDRID_THRESHOLDS)
        ax.plot(recall, precision, "o", color=colour, ms=3, alpha=0.7)
        if lesion in thresholds:
            op = acc.at_threshold(thresholds[lesion])
            ax.plot(op["recall"], op["precision"], "*", color=colour, ms=14, mec="black",
                    label=f"{lesion} @ {thresholds[lesion]:.3f}: P {op['precision']:.3f} R {op['recall']:.3f} "
                          f"F1 {op['f1']:.3f}")
        anchor = next((method for method in (reference, *published) if lesion in published[method]), None)
        if anchor is not None:
            value = published[anchor][lesion]
            ax.axhline(value, color=colour, ls=":", lw=1,
                       label=f"{anchor} published {lesion} AUC_PR {value:.4f} (IDRiD test)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    return save_figure(fig, path)
