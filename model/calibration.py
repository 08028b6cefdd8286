"""Calibrated probabilities: a per-lesion Platt scaling of the network's scores, stored in the checkpoint.

The network is trained with class-balanced losses, so its raw scores are far from frequencies (the
operating thresholds of the first bundled model were 0.996 and 0.948). ``redseg-calibrate`` fits,
for each test-time augmentation mode, ``p' = sigmoid(a * logit(p) + b)`` per lesion on hold-out
predictions; inference applies it before the field-of-view mask. It is monotone, so rankings (AP)
do not change, only what a probability means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

LOGIT_LIMIT = 16.0
"""Scores are clipped to this many logits either side before scaling (float32 sigmoid saturates there)."""


@dataclass(frozen=True)
class Platt:
    slope: float
    intercept: float

    def apply(self, probability: torch.Tensor) -> torch.Tensor:
        logit = torch.logit(probability.float(), eps=1e-7).clamp_(-LOGIT_LIMIT, LOGIT_LIMIT)
        return torch.sigmoid(logit.mul_(self.slope).add_(self.intercept))


@dataclass(frozen=True)
class Calibration:
    """Platt parameters per test-time augmentation mode and lesion, with how they were fitted."""

    modes: dict[str, dict[str, Platt]]
    raw_thresholds: dict[str, float]
    """The operating thresholds on the raw scores that the checkpoint's calibrated thresholds replaced."""
    fitted_on: dict = field(default_factory=dict)

    def for_mode(self, mode: str) -> dict[str, Platt]:
        """The mode's parameters, or those without augmentation where the mode was not fitted."""
        return self.modes.get(mode, self.modes["none"])

    def apply(self, probabilities: torch.Tensor, mode: str = "none") -> torch.Tensor:
        """Calibrated maps (C, H, W), channels in ``lesions`` order."""
        scalings = self.for_mode(mode)
        return torch.stack([scalings[lesion].apply(channel) for lesion, channel in zip(self.lesions, probabilities)])

    @property
    def lesions(self) -> tuple[str, ...]:
        """The lesions calibrated, in the model's output channel order."""
        return tuple(self.raw_thresholds)

    def to_dict(self) -> dict:
        return {
            "method": "platt",
            "modes": {
                mode: {lesion: {"slope": p.slope, "intercept": p.intercept} for lesion, p in lesions.items()}
                for mode, lesions in self.modes.items()
            },
            "raw_thresholds": self.raw_thresholds,
            "fitted_on": self.fitted_on,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        if data.get("method") != "platt":
            raise ValueError(f"unknown calibration method {data.get('method')!r}")
        modes = {
            mode: {lesion: Platt(float(p["slope"]), float(p["intercept"])) for lesion, p in lesions.items()}
            for mode, lesions in data["modes"].items()
        }
        raw_thresholds = {lesion: float(value) for lesion, value in data["raw_thresholds"].items()}
        if "none" not in modes or any(set(lesions) != set(raw_thresholds) for lesions in modes.values()):
            raise ValueError("a calibration needs the mode 'none' and every lesion in each mode")
        return cls(modes, raw_thresholds, dict(data.get("fitted_on", {})))
