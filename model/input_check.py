"""What the model agrees to look at: a photograph it can read at its own scale (``model.fov``) that is a
colour fundus photograph (``model.fundus_check``). The service, the DICOM node and ``redseg-segment``
all ask here, before any lesion is reported."""

from __future__ import annotations

import numpy as np

from model.config import RedSegConfig
from model.fov import FovMapping, PhotographTooSmall, working_mapping
from model.fundus_check import check_fundus


class NotAFundusPhotograph(ValueError):
    def __init__(self, reason: str):
        super().__init__(f"not a colour fundus photograph: {reason}")
        self.reason = reason


UNFIT = (PhotographTooSmall, NotAFundusPhotograph)
"""The refusals ``admit_photograph`` raises."""


def admit_photograph(image: np.ndarray, config: RedSegConfig, fundus_check: bool = True) -> FovMapping:
    """How a model with ``config`` sees this RGB photograph; raises ``PhotographTooSmall`` first (its
    message says what size is needed), then, with ``fundus_check``, ``NotAFundusPhotograph``."""
    mapping = working_mapping(image, config)
    if fundus_check:
        verdict = check_fundus(image)
        if not verdict.is_fundus:
            raise NotAFundusPhotograph(verdict.reason or "it does not look like one")
    return mapping


def refusal_reason(exc: Exception) -> str:
    """The metrics' reason label of a refusal from ``admit_photograph``."""
    return "not_fundus" if isinstance(exc, NotAFundusPhotograph) else "too_small"
