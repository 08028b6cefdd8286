"""Reliability diagrams (observed lesion frequency against predicted probability) as a PNG."""

from __future__ import annotations

from pathlib import Path



def plot_reliability(path: str | Path, curves: dict[str, dict[str, dict]], title: str) -> None:
    """``curves[lesion][label]`` is a ``training.evaluation.calibrate.reliability`` result; one panel per lesion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 5), squeeze=False)
    for ax, lesion in zip(axes[0], curves):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
        for label, curve in curves[lesion].items():
            shown = [i for i, n in enumerate(curve["pixels"]) if n > 0]
            ax.plot([curve["predicted"][i] for i in shown], [curve["observed"][i] for i in shown], marker="o",
                    label=f"{label} (ECE {curve['ece']:.4f})")
        ax.set(title=lesion, xlabel="predicted probability", ylabel="observed lesion frequency", xlim=(0, 1), ylim=(0, 1))
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
