"""The loss curves and hold-out AP of a run, from its ``log.jsonl``, as a PNG."""

from __future__ import annotations

import json
from pathlib import Path

from model.atomic import atomic_write
from model.config import ALL_LESIONS
from training.evaluation.pr_plots import COLOURS as LESION_COLOURS


def read_log(path: str | Path) -> list[dict]:
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_curves(log_path: str | Path, png_path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    train = [r for r in records if r.get("event") == "train"]
    val = [r for r in records if r.get("event") == "val" and "metrics" in r]
    fig, (ax_loss, ax_ap) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    stages = list(dict.fromkeys(r["stage"] for r in train))
    for stage in stages:
        points = [r for r in train if r["stage"] == stage]
        ax_loss.plot([r["step"] for r in points], [r["loss"] for r in points], label=stage)
    for stage in stages[1:]:
        first = min(r["step"] for r in train if r["stage"] == stage)
        for ax in (ax_loss, ax_ap):
            ax.axvline(first, color="grey", linestyle=":", linewidth=0.8)
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    if stages:
        ax_loss.legend(loc="upper right")
    lesions = [lesion for lesion in ALL_LESIONS if val and lesion in val[0]["metrics"]]
    for lesion in lesions:
        colour = LESION_COLOURS[lesion]
        steps = [r["step"] for r in val]
        ax_ap.plot(steps, [r["metrics"][lesion]["average_precision"] for r in val], "o-", color=colour,
                   label=f"{lesion} AP", markersize=3)
        ax_ap.plot(steps, [r["metrics"][lesion]["auc_pr_idrid"] for r in val], "x--", color=colour,
                   label=f"{lesion} AUC_PR (33 thr.)", markersize=3, alpha=0.6)
    ax_ap.set_xlabel("iteration")
    ax_ap.set_ylabel("hold-out (working scale)")
    if val:
        ax_ap.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_write(png_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
