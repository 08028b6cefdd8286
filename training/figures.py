"""Writing a matplotlib figure: one way for every plot the training and evaluation commands make."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path, **savefig) -> Path:
    """Lay ``fig`` out, write it to ``path`` (its folder made if missing), close it, and return the path."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, **savefig)
    plt.close(fig)
    return path
