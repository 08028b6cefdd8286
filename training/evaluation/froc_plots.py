"""The lesion-level FROC curves and the per-image ROC curves as one PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from training.evaluation.froc import FROC_RATES, FROCAccumulator
from training.evaluation.image_level import SCORE_LABELS, roc_auc, roc_curve
from training.evaluation.pr_plots import COLOURS
from training.figures import save_figure


XLIM = (1 / 64, 128)
"""The FROC plot's false regions per image; a threshold with none is drawn at the left edge."""


def _plot_lenient(ax, frocs: Mapping[str, FROCAccumulator]) -> None:
    """Dashed: the curves where only a region off every grader's marking is false (soft maps)."""
    for lesion, froc in frocs.items():
        if froc.num_regions:
            rates = np.geomspace(XLIM[0], XLIM[1], 200)
            ax.plot(rates, froc.sensitivity_at(rates), "--", drawstyle="steps-post", color=COLOURS.get(lesion), lw=1,
                    label=f"{lesion}, false only off every marking: mean {np.mean(froc.sensitivity_at()):.3f}")


def _plot_froc(ax, frocs: Mapping[str, FROCAccumulator]) -> None:
    """The best sensitivity at no more than x false regions per image (the rule the seven rates are read by)."""
    for lesion, froc in frocs.items():
        if not froc.num_regions:
            continue
        colour = COLOURS.get(lesion)
        false_rate, _ = froc.curve()
        rates = np.unique(np.concatenate([np.geomspace(XLIM[0], XLIM[1], 200), false_rate[false_rate >= XLIM[0]]]))
        ax.plot(rates, froc.sensitivity_at(rates), drawstyle="steps-post", color=colour, lw=1.2, alpha=0.6)
        at = froc.sensitivity_at()
        ax.plot(FROC_RATES, at, "o", color=colour, ms=4,
                label=f"{lesion}: mean sensitivity at 1/8..8 {np.mean(at):.3f} ({froc.num_regions} regions)")
        point = froc.point(froc.operating_index())
        ax.plot(max(point["false_regions_per_image"], XLIM[0]), point["sensitivity"], "*", color=colour, ms=13,
                mec="black", label=f"{lesion} @ {point['threshold']:.3f}: sensitivity {point['sensitivity']:.3f}, "
                                   f"{point['false_regions_per_image']:.2f} false / image")
    ax.set_xscale("log", base=2)
    ax.set(xlim=XLIM, ylim=(0, 1.02), xlabel="false regions per image",
           ylabel="sensitivity (ground-truth regions found)", title="Lesion-level FROC")
    ax.set_xticks([1 / 32, 1 / 8, 1 / 2, 2, 8, 32, 128], ["1/32", "1/8", "1/2", "2", "8", "32", "128"])
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)


def _plot_image_roc(ax, rows: Sequence[dict], lesions: Sequence[str]) -> None:
    """Solid: the highest probability; dashed: the served regions at the operating threshold; dash-dotted: the
    lesions at probability >= 0.9."""
    for lesion in lesions:
        labels = [r[lesion]["holds_lesion"] for r in rows]
        for (score, text), style in zip(SCORE_LABELS.items(), ("-", "--", "-.")):
            scores = [r[lesion][score] for r in rows]
            auc = roc_auc(scores, labels)
            if not np.isfinite(auc):
                continue
            fpr, tpr = roc_curve(scores, labels)
            ax.plot(fpr, tpr, style, color=COLOURS.get(lesion), lw=1.5 if style == "-" else 1,
                    label=f"{lesion}, {text}: ROC AUC {auc:.3f} ({int(np.sum(labels))} of {len(labels)} hold it)")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity", ylabel="sensitivity",
           title="Per image: does the photograph hold the lesion?")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7)


def plot_froc(path: str | Path, frocs: Mapping[str, FROCAccumulator], rows: Sequence[dict], title: str,
              lenient: Mapping[str, FROCAccumulator] | None = None) -> Path:
    """Left: FROC per lesion (curve, the seven rates, the operating point; dashed, ``lenient``'s curves);
    right: per-image ROC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), dpi=90)
    if lenient:
        _plot_lenient(left, lenient)
    _plot_froc(left, frocs)
    _plot_image_roc(right, rows, list(frocs))
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
