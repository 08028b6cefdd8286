"""The referral score: a logistic model on a photograph's screening features, stored in the checkpoint.

Pure numpy so the service needs no fitting library; ``training/referral/screen.py`` fits it. Each feature
enters as ``log1p(value / unit)``, standardised with the training photographs' mean and scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from model.screening.features import FEATURES_VERSION

DISCLAIMER = (
    "An aid, not a grade: diabetic-retinopathy grading also depends on lesions RedSeg does not see "
    "(hard and soft exudates, new vessels, macular oedema). The score reflects red lesions only; "
    "a photograph below the operating point can still need referral."
)
"""What the answer says of a model that segments the red lesions only."""
EXUDATE_DISCLAIMER = (
    "An aid, not a grade: diabetic-retinopathy grading also depends on what RedSeg does not see "
    "(new vessels, venous beading, macular thickening). The score reflects the red lesions and exudates "
    "it segments; a photograph below the operating point can still need referral. The risk of macular oedema, "
    "where given, reads hard exudates near the macula: it is not a DME grading."
)
"""What the answer says of a model that also segments hard and soft exudates."""


def disclaimer(lesions: Sequence[str]) -> str:
    """The disclaimer that fits a model segmenting ``lesions``."""
    return EXUDATE_DISCLAIMER if "EX" in lesions else DISCLAIMER


INDEPENDENT_VALIDATION: dict[tuple[str, str], dict] = {
    ("redseg-full", "2"): {
        "data": "IDRiD disease grading, test split: 100 photographs, 61 referable (same camera)",
        "measured": "outside the project, through /segment",
        "roc_auc": 0.910, "roc_auc_ci95": [0.846, 0.962], "sensitivity": 0.738, "specificity": 0.923,
    },
}
"""The referral score's figures measured outside the project on photographs it never had, by checkpoint
(name, version): the answer quotes them beside the cross-validated ones (MODEL_CARD.md, "Other cameras")."""

CAMERAS = "validated on one camera (IDRiD's); its figures on other cameras are not known"


def quoted_validation(
    validation: dict, name: str, version: str, independent: Mapping[tuple[str, str], dict] = INDEPENDENT_VALIDATION
) -> dict:
    """A score's stored validation, with where it was validated and the independent figures where known
    (``independent``: by checkpoint, the referral score's by default)."""
    return validation | {"cameras": CAMERAS, "independent": independent.get((name, version))}


class ReferralScoreError(ValueError):
    """A stored referral score that cannot be read (unknown kind, feature version or malformed fields)."""


def log_features(rows: Sequence[Mapping[str, float]], features: Sequence[str], units: Sequence[float]) -> np.ndarray:
    """``log1p(value / unit)`` of the named features, (n, k), of feature dicts: what the score is fitted and applied on."""
    raw = np.array([[row[name] for name in features] for row in rows], dtype=np.float64).reshape(-1, len(features))
    return np.log1p(np.maximum(raw, 0.0) / np.asarray(units))


@dataclass(frozen=True)
class ReferralScore:
    features: list[str]
    units: list[float]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    operating_point: float
    """Scores at or above it are flagged for referral."""
    validation: dict = field(default_factory=dict)
    """How it was validated: data, method, ROC AUC with its interval, sensitivity and specificity."""
    kind: str = "logistic"
    features_version: int = FEATURES_VERSION

    def transform(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Standardised log features, (n, k), of feature dicts."""
        return (log_features(rows, self.features, self.units) - np.asarray(self.mean)) / np.asarray(self.scale)

    def scores(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        logits = self.transform(rows) @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def score(self, features: Mapping[str, float]) -> float:
        return float(self.scores([features])[0])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ReferralScore":
        if data.get("kind") != "logistic":
            raise ReferralScoreError(f"unknown referral score kind {data.get('kind')!r}")
        if data.get("features_version") != FEATURES_VERSION:
            raise ReferralScoreError(
                f"the referral score was fitted on screening features version {data.get('features_version')!r}; "
                f"this RedSeg computes version {FEATURES_VERSION}: refit it with redseg-screen"
            )
        try:
            score = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as exc:
            raise ReferralScoreError(f"malformed referral score: {exc}") from exc
        lengths = {len(score.features), len(score.units), len(score.mean), len(score.scale), len(score.coef)}
        if len(lengths) != 1 or not all(math.isfinite(v) for v in (*score.coef, score.intercept, score.operating_point)):
            raise ReferralScoreError("malformed referral score: inconsistent or non-finite parameters")
        return score
