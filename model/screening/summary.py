"""The screening summary of one photograph, as the service and ``redseg-segment`` report it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from model.checkpoint import Checkpoint
from model.config import RED_LESIONS
from model.fov import Disc
from model.screening.features import FieldOfView, LesionCount, count_regions, field_of_view, image_features, lesion_counts
from model.screening.masks import LesionMasks
from model.screening.quality import ImageQuality, assess_quality
from model.screening.referral import DISCLAIMER, ReferralScore, ReferralScoreError, disclaimer, quoted_validation

NO_SCORE = "this checkpoint carries no fitted referral score (fit one with redseg-screen)"


@dataclass(frozen=True)
class Referral:
    score: float
    operating_point: float
    refer: bool
    validation: dict


@dataclass(frozen=True)
class MacularOedemaRisk:
    """The risk of macular oedema (IDRiD's DME grade > 0) from the same features: an aid, not a DME grading."""

    score: float
    operating_point: float
    at_risk: bool
    """score >= operating_point."""
    validation: dict


@dataclass(frozen=True)
class ScreeningSummary:
    lesions: dict[str, LesionCount]
    """Each lesion the model segments, in its output order, at the checkpoint's operating thresholds."""
    field_of_view: FieldOfView
    quality: ImageQuality
    referral: Referral | None
    """None for an ungradable photograph (no referral decision) or a checkpoint without a fitted score."""
    note: str | None = None
    """Why there is no referral score, when there is none."""
    disclaimer: str = DISCLAIMER
    macular_oedema: MacularOedemaRisk | None = None
    """None without hard exudates, without a fitted risk score, or for an ungradable photograph."""


def ungradable_note(quality: ImageQuality) -> str:
    return f"ungradable ({', '.join(quality.reasons)}): retake the photograph; no referral decision"


def stored_score(stored: dict | None) -> tuple[ReferralScore | None, str | None]:
    """A score a checkpoint stores (its referral or macular-oedema score), or None and the reason."""
    if not stored:
        return None, NO_SCORE
    try:
        return ReferralScore.from_dict(stored), None
    except ReferralScoreError as exc:
        return None, str(exc)


def referral_score(checkpoint: Checkpoint) -> tuple[ReferralScore | None, str | None]:
    """The checkpoint's referral score, or None and the reason."""
    return stored_score(checkpoint.referral)


def macular_oedema_score(checkpoint: Checkpoint) -> ReferralScore | None:
    """The checkpoint's macular-oedema risk score: None without hard exudates, a fitted score or a readable one."""
    return stored_score(checkpoint.macular_oedema)[0] if "EX" in checkpoint.config.lesions else None


def _scored(score: ReferralScore, features: dict[str, float]) -> tuple[float, float, bool]:
    """The score of one photograph's features, its operating point and whether it is at or above it."""
    value = score.score(features)
    return value, score.operating_point, value >= score.operating_point


def summarise(
    image: np.ndarray,
    probabilities: np.ndarray,
    checkpoint: Checkpoint,
    masks: LesionMasks | None = None,
    disc: Disc | None = None,
) -> ScreeningSummary:
    """Lesion counts and areas, the field of view and the referral score of an RGB uint8 photograph.

    ``masks``: the ``lesion_masks`` the caller serves. Made at the checkpoint's thresholds, their
    regions are the ones counted (not labelled twice); at other thresholds the summary makes its own.
    ``disc``: the photograph's fundus disc where the caller has found it (``FovMapping.disc``), so that
    the macula features do not look for it again.
    """
    fov = field_of_view(image)
    quality = assess_quality(image, fov.gradable_fraction)
    if masks is not None and masks.thresholds == checkpoint.thresholds:
        lesions = {lesion: count_regions(masks.regions[lesion], lesion, fov.area_pixels) for lesion in masks.regions}
    else:
        lesions = lesion_counts(probabilities, checkpoint.thresholds, fov.area_pixels)
    (score, note), oedema = referral_score(checkpoint), macular_oedema_score(checkpoint)
    if not quality.gradable:
        score, oedema, note = None, None, ungradable_note(quality)
    caveat = disclaimer(checkpoint.config.lesions)
    if score is None and oedema is None:
        return ScreeningSummary(lesions, fov, quality, None, note, caveat)
    names = dict.fromkeys(name for fitted in (score, oedema) if fitted is not None for name in fitted.features)
    features = image_features(probabilities, checkpoint.thresholds, fov, names, {"op": lesions}, image, disc)
    name, version = checkpoint.name, checkpoint.version
    referral = None if score is None else Referral(*_scored(score, features), quoted_validation(score.validation, name, version))
    risk = None if oedema is None else MacularOedemaRisk(
        *_scored(oedema, features), quoted_validation(oedema.validation, name, version, independent={}))
    return ScreeningSummary(lesions, fov, quality, referral, note, caveat, risk)


def one_line(summary: ScreeningSummary) -> str:
    """``19 MA and 28 HE lesions, gradable 98%, referral score 0.97 >= 0.74: refer``; a model that also
    segments exudates: ``19 MA, 28 HE, 6 EX and 0 SE lesions, ...``, and with its macular-oedema risk score
    ``...: refer; macular oedema risk 0.81 >= 0.40: at risk``."""
    counts = [f"{found.count} {lesion}" for lesion, found in summary.lesions.items()]
    counts = f"{', '.join(counts[:-1])} and {counts[-1]}"
    text = f"{counts} lesions, gradable {100 * summary.field_of_view.gradable_fraction:.0f}%"
    if not summary.quality.gradable:
        return f"{text}; {ungradable_note(summary.quality)}"
    referral = summary.referral
    if referral is None:
        text = f"{text}, no referral score"
    else:
        verdict = ">= {:.2f}: refer" if referral.refer else "< {:.2f}: below the referral point"
        text = f"{text}, referral score {referral.score:.2f} {verdict.format(referral.operating_point)}"
    risk = summary.macular_oedema
    if risk is None:
        return text
    verdict = ">= {:.2f}: at risk" if risk.at_risk else "< {:.2f}: below the risk point"
    return f"{text}; macular oedema risk {risk.score:.2f} {verdict.format(risk.operating_point)}"


OEDEMA_FIELDS = ("macular_oedema_risk", "macular_oedema_operating_point", "macular_oedema_at_risk")
"""screening.csv's macular-oedema risk columns (models that segment hard exudates)."""


def csv_fields(lesions: Iterable[str] = RED_LESIONS) -> list[str]:
    """screening.csv's columns for a model segmenting ``lesions``: three per lesion, in their order, and with
    hard exudates the macular-oedema risk's three."""
    lesions = list(lesions)
    columns = [f"{lesion}_{kind}" for lesion in lesions for kind in ("count", "area_pixels", "area_fraction_fov")]
    quality = ["fov_area_pixels", "gradable_fraction", "gradable", "ungradable_reasons"]
    oedema = list(OEDEMA_FIELDS) if "EX" in lesions else []
    return ["image", *columns, *quality, "referral_score", "operating_point", "refer", *oedema]


CSV_FIELDS = csv_fields()
"""A two-lesion (MA and HE) model's columns."""


def csv_row(image: str, summary: ScreeningSummary) -> dict:
    """One photograph's summary as a flat row of ``csv_fields(summary.lesions)`` (score columns empty without a score)."""
    row: dict = {"image": image}
    for lesion, found in summary.lesions.items():
        row |= {f"{lesion}_count": found.count, f"{lesion}_area_pixels": found.area_pixels}
        row[f"{lesion}_area_fraction_fov"] = f"{found.area_fraction_fov:.6g}"
    row |= {"fov_area_pixels": summary.field_of_view.area_pixels}
    row["gradable_fraction"] = f"{summary.field_of_view.gradable_fraction:.4f}"
    row |= {"gradable": int(summary.quality.gradable), "ungradable_reasons": "; ".join(summary.quality.reasons)}
    referral = summary.referral
    row["referral_score"] = "" if referral is None else f"{referral.score:.4f}"
    row["operating_point"] = "" if referral is None else f"{referral.operating_point:.4f}"
    row["refer"] = "" if referral is None else int(referral.refer)
    if "EX" in summary.lesions:
        risk = summary.macular_oedema
        values = ("", "", "") if risk is None else (f"{risk.score:.4f}", f"{risk.operating_point:.4f}", int(risk.at_risk))
        row |= dict(zip(OEDEMA_FIELDS, values))
    return row
