"""Stage 2 (FN+FP) settings against each other: hold-out AP at the working scale over the stage's iterations.

    .venv/bin/python campaign/stage2-balanced/compare.py    # writes campaign/stage2-balanced/compare.png
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from training.plots import read_log  # noqa: E402

PROBES = ROOT / "campaign" / "gpu-lent" / "fnfp-probe"
RUNS = {
    "default, full width (redseg-gpu 1 -> redseg-full 2)": (
        (0.4795, 0.6254),
        {
            "mean FN+FP, Adam 1e-6 (GPU)": PROBES / "adam-1e-6.jsonl",
            "mean FN+FP, Adam 3e-7 (GPU)": PROBES / "adam-3e-7.jsonl",
            "summed FN+FP, SGD 1e-9 (GPU)": PROBES / "sgd-sum-1e-9.jsonl",
            "mean FN+FP, Adam 3e-7, frozen BN": PROBES / "frozen-bn-cpu.jsonl",
            "mean FN+FP on fused only, frozen BN": PROBES / "fused-only-cpu.jsonl",
            "balanced FN+FP, Adam 1e-6, frozen BN": HERE / "probe-fnfp-balanced" / "log.jsonl",
        },
    ),
    "fast, quarter width (redseg-cpu 2 -> redseg-fast 3)": (
        (0.4592, 0.5525),
        {
            "balanced FN+FP, Adam 1e-6, frozen BN": HERE / "probe-fnfp-balanced-cpu" / "log.jsonl",
            "balanced FN+FP, Adam 3e-6, frozen BN": HERE / "probe-fnfp-balanced-cpu-3e-6" / "log.jsonl",
            "balanced FN+FP, Adam 1e-5, frozen BN": HERE / "probe-fnfp-balanced-cpu-1e-5" / "log.jsonl",
        },
    ),
}


def validations(path: Path) -> tuple[list[int], dict[str, list[float]]]:
    val = [r for r in read_log(path) if r.get("event") == "val" and "metrics" in r]
    steps = [0] + [r["stage_step"] for r in val]
    return steps, {lesion: [r["metrics"][lesion]["average_precision"] for r in val] for lesion in ("MA", "HE")}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex="col")
    for column, (model, (start, logs)) in enumerate(RUNS.items()):
        for row, lesion in enumerate(("MA", "HE")):
            ax = axes[row][column]
            for label, path in logs.items():
                steps, ap = validations(path)
                style = "o-" if label.startswith("balanced") else "x--"
                ax.plot(steps, [start[row]] + ap[lesion], style, markersize=3, label=label)
            ax.axhline(start[row], color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{model}: {lesion}", fontsize=10)
            ax.set_ylabel("hold-out AP (working scale)")
        axes[1][column].set_xlabel("stage-2 iteration (0: the stage's start)")
        axes[1][column].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(HERE / "compare.png", dpi=90)
    print(f"wrote {HERE / 'compare.png'}")


if __name__ == "__main__":
    main()
