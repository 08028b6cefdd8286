"""The JSON the API answers with."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from model.screening.referral import DISCLAIMER
from model.screening.summary import ScreeningSummary

# A shortened real answer (base64 strings cut) for the OpenAPI docs.
SEGMENT_EXAMPLE = {
    "model": {"name": "redseg", "version": "1.0", "sha256": "9f2c...e41a", "device": "cpu"},
    "image": {"width": 4288, "height": 2848},
    "lesions": {
        "MA": {
            "threshold": 0.5, "area_pixels": 2113, "area_fraction": 0.000173, "components": 41,
            "mask_png": "iVBORw0KGgoAAAANSUhEUgAAELAAAAsgCAAAAAB...", "probability_png": "iVBORw0KGgoAAAANSUhEUgAAELAAAAsgEAAAAAB...",
        },
        "HE": {
            "threshold": 0.5, "area_pixels": 48210, "area_fraction": 0.00395, "components": 12,
            "mask_png": "iVBORw0KGgoAAAANSUhEUgAAELAAAAsgCAAAAAB...", "probability_png": "iVBORw0KGgoAAAANSUhEUgAAELAAAAsgEAAAAAB...",
        },
    },
    "overlay_png": None,
    "screening": {
        "lesions": {
            "MA": {"count": 12, "area_pixels": 1520, "area_fraction_fov": 0.000179},
            "HE": {"count": 17, "area_pixels": 40210, "area_fraction_fov": 0.00473},
        },
        "field_of_view": {"area_pixels": 8493184, "fraction_of_image": 0.6955, "gradable_fraction": 0.991},
        "quality": {"gradable": True, "reasons": [], "field_share": 0.69, "brightness": 163.0, "saturated_share": 0.025,
                    "focus": 0.09, "usable_share": 0.991},
        "referral": {"score": 0.81, "operating_point": 0.42, "refer": True, "validation": {"roc_auc": 0.9}},
        "macular_oedema": {"score": 0.74, "operating_point": 0.38, "at_risk": True, "validation": {"roc_auc": 0.95}},
        "note": None,
        "disclaimer": "An aid, not a grade: ...",
    },
    "timings": {"decode_s": 0.08, "queue_wait_s": 0.0, "infer_s": 2.4, "encode_s": 0.35, "total_s": 2.85},
}


class LesionCountResult(BaseModel):
    count: int = Field(description="Lesions: connected regions of the mask; for MA only small round ones (microaneurysms).")
    area_pixels: int = Field(description="Pixels of the counted lesions.")
    area_fraction_fov: float = Field(description="area_pixels / pixels of the field of view.")


class FieldOfViewResult(BaseModel):
    area_pixels: int = Field(description="Pixels inside the fundus's circular field of view.")
    fraction_of_image: float
    gradable_fraction: float = Field(description="Share of the field of view neither too dark nor washed out.")


class ReferralResult(BaseModel):
    score: float = Field(ge=0, le=1, description="Referral score, 0..1 (on the lesions the model segments).")
    operating_point: float = Field(description="Scores at or above it are flagged for referral.")
    refer: bool = Field(description="score >= operating_point.")
    validation: dict = Field(description="Where and how the score and its operating point were validated.")


class MacularOedemaResult(BaseModel):
    score: float = Field(ge=0, le=1, description="Risk-of-macular-oedema score, 0..1: the referral score's features (hard "
                         "exudates near the macula among them) fitted for IDRiD's DME grade > 0. An aid, not a DME grading.")
    operating_point: float = Field(description="Scores at or above it are flagged at risk (set for the referral score's target sensitivity).")
    at_risk: bool = Field(description="score >= operating_point: hard exudates suggest a risk of macular oedema.")
    validation: dict = Field(description="Where and how the score and its operating point were validated.")


class QualityResult(BaseModel):
    gradable: bool = Field(description="False: the photograph cannot be graded; retake it. There is then no referral decision.")
    reasons: list[str] = Field(description="Why it is not gradable: too dark, washed out, out of focus, too little of the field usable.")
    field_share: float = Field(description="Share of the photograph inside the field of view.")
    brightness: float = Field(description="Median brightness of the field of view (largest RGB channel, 0..255).")
    saturated_share: float = Field(description="Share of the field of view with a channel at 250 or more.")
    focus: float = Field(description="Fine detail over contrast in the field: low for a blurred photograph.")
    usable_share: float = Field(description="Share of the field neither too dark nor washed out locally.")


class ScreeningResult(BaseModel):
    lesions: dict[str, LesionCountResult] = Field(
        description="The lesions answered (as in the answer's lesions), at the model's operating thresholds, whatever "
        "threshold_* asks.")
    field_of_view: FieldOfViewResult
    quality: QualityResult
    referral: ReferralResult | None = Field(
        description="Absent for an ungradable photograph (quality.gradable false: no referral decision) or when the "
        "checkpoint carries no fitted referral score; note says which.")
    macular_oedema: MacularOedemaResult | None = Field(
        None, description="The risk of macular oedema, with a model that segments hard exudates and carries a fitted "
        "risk score; absent otherwise and for an ungradable photograph.")
    note: str | None = Field(None, description="Why there is no referral score.")
    disclaimer: str = Field(DISCLAIMER)

    @classmethod
    def of(cls, summary: ScreeningSummary, answers: Callable[[str], bool] = lambda lesion: True) -> "ScreeningResult":
        """The summary's answer, with the lesions ``answers`` accepts."""
        referral, risk = summary.referral, summary.macular_oedema
        return cls(
            lesions={
                lesion: LesionCountResult(**vars(found)) for lesion, found in summary.lesions.items() if answers(lesion)
            },
            field_of_view=FieldOfViewResult(**vars(summary.field_of_view)),
            quality=QualityResult(**vars(summary.quality) | {"reasons": list(summary.quality.reasons)}),
            referral=None if referral is None else ReferralResult(**vars(referral)),
            macular_oedema=None if risk is None else MacularOedemaResult(**vars(risk)),
            note=summary.note,
            disclaimer=summary.disclaimer,
        )


class LesionResult(BaseModel):
    threshold: float = Field(
        description="Operating threshold on the probability used for the mask: mask = probability_png / 65535 >= threshold, exactly."
    )
    area_pixels: int = Field(description="Pixels in the mask.")
    area_fraction: float = Field(description="area_pixels / (width * height).")
    components: int = Field(description="Connected regions (8-connectivity) in the mask.")
    mask_png: str | None = Field(
        None, description="Base64 8-bit grey PNG at the upload's resolution: 255 lesion, 0 background (outputs=masks). "
        "Null in the zip answer's result.json, where it is the file <lesion>_mask.png."
    )
    probability_png: str | None = Field(
        None, description="Base64 16-bit grey PNG at the upload's resolution: probability = value / 65535 (outputs=probabilities). "
        "Null in the zip answer's result.json, where it is the file <lesion>_probability.png."
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    sha256: str = Field(description="SHA-256 of the checkpoint file.")
    device: str | None = Field(
        None, description="/segment: the device that ran this request; /readyz: the devices the model is loaded on (comma-separated)."
    )


class ImageInfo(BaseModel):
    width: int
    height: int


class Timings(BaseModel):
    decode_s: float
    queue_wait_s: float
    infer_s: float
    encode_s: float
    total_s: float = Field(description="From the upload received to the answer built.")


class SegmentResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), json_schema_extra={"examples": [SEGMENT_EXAMPLE]})

    model: ModelInfo
    image: ImageInfo
    lesions: dict[str, LesionResult] = Field(
        description="Per lesion, in the model's order: MA (microaneurysms) and HE (haemorrhages), and EX (hard exudates) "
        "and SE (soft exudates) with a model that segments them; only those outputs names, if it names any."
    )
    overlay_png: str | None = Field(
        None,
        description="Base64 RGB PNG of the photo with each lesion answered tinted and outlined in its colour: MA yellow, "
        "HE cyan, EX green, SE magenta; MA drawn on top where masks overlap (outputs=overlay). Null in the zip answer's "
        "result.json, where it is the file overlay.png.",
    )
    screening: ScreeningResult = Field(
        description="Screening summary: lesion counts and areas, gradable field of view, referral score, and with a model "
        "that segments hard exudates the risk of macular oedema. An aid, not a grade: the scores weigh only the lesions "
        "the model segments, and DR grading also depends on new vessels, venous beading and macular thickening."
    )
    timings: Timings


class ValidationIssue(BaseModel):
    loc: list[str] = Field(description="Where: e.g. ['query', 'threshold_ma'].")
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: str = Field(description="What is wrong, in a sentence.")
    errors: list[ValidationIssue] | None = Field(None, description="Bad parameters (422 only): each problem found.")


class Health(BaseModel):
    status: str = Field("ok", description="ok, or failed when the model failed to load (detail then says why).")
    detail: str | None = None


class WorkerStatus(BaseModel):
    device: str
    alive: bool
    warm: bool
    restarts: int
    error: str | None = None


class Readiness(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ready: bool
    reason: str | None = Field(
        None, description="Why not, when not ready: loading the model (making its OpenVINO model at a first start), "
        "warming it up, a worker restarting, shutting down."
    )
    model: ModelInfo | None = None
    workers: list[WorkerStatus] = []
