"""Which torch device to run on, from a user's choice: ``auto`` means CUDA if there is one, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` (or None): the current CUDA device if CUDA is available, else the CPU; any other name
    (``cpu``, ``cuda``, ``cuda:1``) as torch reads it. Asking for CUDA where there is none is an error."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but CUDA is not available")
    return device
