"""The screening summary in the API's answers: lesion counts and areas, gradable field of view, referral score."""

from __future__ import annotations

from pydantic import BaseModel, Field

from model.referral import DISCLAIMER
from model.summary import ScreeningSummary


class LesionCountResult(BaseModel):
    count: int = Field(description="Lesions: connected regions of the mask; for MA only small round ones (microaneurysms).")
    area_pixels: int = Field(description="Pixels of the counted lesions.")
    area_fraction_fov: float = Field(description="area_pixels / pixels of the field of view.")


class FieldOfViewResult(BaseModel):
    area_pixels: int = Field(description="Pixels inside the fundus's circular field of view.")
    fraction_of_image: float
    gradable_fraction: float = Field(description="Share of the field of view neither too dark nor washed out.")


class ReferralResult(BaseModel):
    score: float = Field(ge=0, le=1, description="Red-lesion referral score, 0..1.")
    operating_point: float = Field(description="Scores at or above it are flagged for referral.")
    refer: bool = Field(description="score >= operating_point.")
    validation: dict = Field(description="Where and how the score and its operating point were validated.")


class ScreeningResult(BaseModel):
    lesions: dict[str, LesionCountResult] = Field(description="At the model's operating thresholds, whatever threshold_* asks.")
    field_of_view: FieldOfViewResult
    referral: ReferralResult | None = Field(description="Absent when the checkpoint carries no fitted referral score.")
    note: str | None = Field(None, description="Why there is no referral score.")
    disclaimer: str = Field(DISCLAIMER)

    @classmethod
    def of(cls, summary: ScreeningSummary) -> "ScreeningResult":
        referral = summary.referral
        return cls(
            lesions={lesion: LesionCountResult(**vars(found)) for lesion, found in summary.lesions.items()},
            field_of_view=FieldOfViewResult(**vars(summary.field_of_view)),
            referral=None if referral is None else ReferralResult(**vars(referral)),
            note=summary.note,
            disclaimer=summary.disclaimer,
        )
