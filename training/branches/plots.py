"""The branch training's loss curve, smoothed, one colour per phase."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.figures import save_figure


def plot_losses(log: list[dict], path: Path, window: int = 50) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    offset = 0
    for phase in dict.fromkeys(record["phase"] for record in log):
        losses = np.array([record["loss"] for record in log if record["phase"] == phase])
        smoothed = np.convolve(losses, np.ones(min(window, len(losses))) / min(window, len(losses)), mode="valid")
        ax.plot(offset + np.arange(len(smoothed)), smoothed, label=phase)
        offset += len(losses)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss (mean of {window} steps)")
    ax.legend()
    return save_figure(fig, path, dpi=120)
