"""``redseg-screen``: validate the red-lesion referral score on IDRiD's graded photographs and refit it.

Segments every graded photograph (features cached per model), cross-validates the referral score
against referable DR (grade >= 2) next to single-feature and simple-rule baselines, writes
``metrics.json``, ``per_image.csv``, ``table.md``, ``roc.png`` and ``score_by_grade.png`` to ``--out``, and with
``--write`` stores the score fitted on all photographs in the checkpoint's metadata. Where the features read hard
exudates, a second score, the risk of macular oedema (IDRiD's DME grade > 0), is validated and stored the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, model_digest, write_referral
from model.backends import BACKENDS, load_for_inference
from model.devices import resolve_device
from model.inference import TileSettings
from model.precision import PRECISIONS
from model.screening.referral import ReferralScore, disclaimer
from model.screening.features import feature_lesion, feature_names
from training.referral.grading import DEFAULT_ROOT, REFERABLE_GRADE, GradedImage, list_graded
from training.data.idrid import DatasetLayoutError
from training.referral.features import DEFAULT_CACHE, extract_features
from training.referral.fit import (
    TARGET_SENSITIVITY,
    auc_with_interval,
    cross_validate,
    cross_validated_rule,
    default_features,
    fit_score,
    rule_figures,
    threshold_for_sensitivity,
)
from training.referral.plots import plot_roc, plot_score_by_grade

PROG = "redseg-screen"
SINGLE_FEATURES = {"HE count": "HE_count_op", "MA count": "MA_count_op", "HE area": "HE_area_op", "MA area": "MA_area_op"}
RULES = {"any HE": ("HE_count_op", 1), "any MA": ("MA_count_op", 1), "MA count >= 5": ("MA_count_op", 5)}
FOLD_RULES = {"HE count >= N (N per fold)": "HE_count_op", "MA count >= N (N per fold)": "MA_count_op"}
"""Count rules whose N is chosen in each fold, as the score's operating point is."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, metavar="PATH")
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, metavar="DIR", help="IDRiD grading folder")
    parser.add_argument("--out", type=Path, default=Path("runs/screening"), metavar="DIR")
    parser.add_argument("--write", action="store_true", help="store the refitted score in the checkpoint")
    parser.add_argument("--features", help="comma-separated feature names (default: those of training.referral.fit."
                        "DEFAULT_FEATURES whose lesion the model segments)")
    parser.add_argument("--target-sensitivity", type=float, default=TARGET_SENSITIVITY, metavar="S",
                        help=f"the operating point is set for this sensitivity on the fitting photographs (default {TARGET_SENSITIVITY})")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the k-fold split, averaged")
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples for the 95%% intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, metavar="DIR", help="per-model feature cache")
    parser.add_argument("--limit", type=int, help="only the first N photographs (a quick check)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="as the service's REDSEG_PRECISION")
    parser.add_argument("--backend", choices=BACKENDS, default="torch",
                        help="the network's engine (default torch, on which the bundled scores were fitted; "
                             "openvino-int8 measures the score as the CPU service computes its features)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.features is not None:
        args.features = [name.strip() for name in args.features.split(",") if name.strip()]
        unknown = sorted(set(args.features) - set(feature_names()))
        if unknown:
            parser.error(f"unknown features {unknown}; known: {', '.join(feature_names())}")
    if not 0 < args.target_sensitivity <= 1:
        parser.error(f"--target-sensitivity must be in (0, 1], got {args.target_sensitivity}")
    return args


REFERRAL_TARGET = f"referable diabetic retinopathy (IDRiD grade >= {REFERABLE_GRADE})"
OEDEMA_TARGET = "risk of macular oedema (IDRiD grade > 0)"


@dataclass(frozen=True)
class Validated:
    """A score validated by cross-validation and refitted on every photograph."""

    score: ReferralScore
    """Refitted on all photographs, at the operating point reaching the target sensitivity out of fold, with its validation."""
    figures: dict
    """ROC AUC, sensitivity and specificity out of fold, with 95% intervals, and the final operating point."""
    scores: np.ndarray
    """Each photograph's out-of-fold score."""
    fold_operating_points: dict
    """The lowest and highest of the folds' own operating points."""


def validate_score(rows: list[dict], labels: np.ndarray, args: argparse.Namespace, target: str, positives: str) -> Validated:
    """Cross-validate the score of ``args.features`` for ``labels`` (``target``; ``positives`` names the positive
    photographs), then refit it on every photograph."""
    cv = cross_validate(rows, labels, args.features, args.folds, args.repeats, args.seed, args.target_sensitivity)
    boot = dict(resamples=args.bootstrap, seed=args.seed)
    figures = auc_with_interval(labels, cv.scores, **boot) | rule_figures(labels, cv.referred, **boot)
    operating_point = threshold_for_sensitivity(cv.scores, labels, args.target_sensitivity)
    validation = {
        "target": target,
        "data": f"IDRiD disease grading, training set: {len(labels)} photographs, {int(labels.sum())} {positives}",
        "method": f"{args.repeats}x repeated stratified {args.folds}-fold cross-validation, out-of-fold scores; "
        f"operating point per fold for sensitivity >= {args.target_sensitivity} on that fold's training photographs; "
        f"95% intervals by {args.bootstrap} bootstrap resamples of photographs",
        "roc_auc": round(figures["auc"], 4),
        "roc_auc_ci95": [round(v, 4) for v in figures["auc_ci95"]],
        "sensitivity": round(figures["sensitivity"], 4),
        "specificity": round(figures["specificity"], 4),
    }
    score = replace(fit_score(rows, labels, args.features, operating_point), validation=validation)
    points = {"min": min(cv.fold_operating_points), "max": max(cv.fold_operating_points)}
    return Validated(score, figures | {"operating_point_final": operating_point}, cv.scores, points)


def validate(images: list[GradedImage], rows: list[dict], args: argparse.Namespace) -> tuple[dict, Validated, Validated | None]:
    """The validation figures, the referral score and, where the features read hard exudates, the macular-oedema
    risk score, each refitted on every photograph."""
    labels = np.array([image.referable for image in images], dtype=int)
    referral = validate_score(rows, labels, args, REFERRAL_TARGET, "referable")
    metrics = {
        "fitted_score": referral.score.to_dict(),
        "checkpoint": str(args.checkpoint),
        "features": args.features,
        "score": referral.figures,
        "fold_operating_points": referral.fold_operating_points,
        **baselines(rows, labels, args),
        "validation": referral.score.validation,
        "disclaimer": disclaimer([feature_lesion(name) for name in args.features]),
    }
    oedema = macular_oedema(images, rows, args)
    if oedema is None:
        return metrics, referral, None
    offered = reads_exudates(args.features)  # else measured, for comparison, but not offered
    metrics["macular_oedema"] = {"target": OEDEMA_TARGET, "positives": sum(image.macular_oedema > 0 for image in images)}
    metrics["macular_oedema"] |= oedema.figures | {"fold_operating_points": oedema.fold_operating_points}
    metrics["macular_oedema"]["fitted_score"] = oedema.score.to_dict() if offered else None
    return metrics, referral, oedema if offered else None


def baselines(rows: list[dict], labels: np.ndarray, args: argparse.Namespace) -> dict:
    """Each single feature's AUC and the count rules' sensitivity and specificity (N fixed, or chosen per fold)."""
    boot = dict(resamples=args.bootstrap, seed=args.seed)
    per_fold = {
        name: cross_validated_rule(_column(rows, f), labels, args.folds, args.repeats, args.seed, args.target_sensitivity)
        for name, f in FOLD_RULES.items()
    }
    return {
        "single_features": {name: auc_with_interval(labels, _column(rows, f), **boot) for name, f in SINGLE_FEATURES.items()},
        "rules": {name: rule_figures(labels, _column(rows, f) >= n, **boot) for name, (f, n) in RULES.items()}
        | {name: rule_figures(labels, referred, **boot) for name, referred in per_fold.items()},
    }


def macular_oedema(images: list[GradedImage], rows: list[dict], args: argparse.Namespace) -> Validated | None:
    """The same features' score for a risk of macular oedema (IDRiD's grade > 0), cross-validated and refitted
    as the referral score; None without a photograph at risk."""
    labels = np.array([image.macular_oedema > 0 for image in images], dtype=int)
    if not labels.any():
        return None
    return validate_score(rows, labels, args, OEDEMA_TARGET, "with a risk of macular oedema")


def reads_exudates(features: list[str]) -> bool:
    """Whether a score of ``features`` may state a risk of macular oedema: red lesions alone cannot see it."""
    return any(feature_lesion(name) == "EX" for name in features)


def _column(rows: list[dict], name: str) -> np.ndarray:
    return np.array([row[name] for row in rows], dtype=np.float64)


def write_report(out: Path, images: list[GradedImage], rows: list[dict], metrics: dict, scores: np.ndarray) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with (out / "per_image.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        names = [name for name in feature_names() if rows and name in rows[0]]
        writer.writerow(["image", "grade", "referable", "score_out_of_fold", *names])
        for image, row, score in zip(images, rows, scores):
            writer.writerow([image.name, image.grade, int(image.referable), f"{score:.4f}", *(f"{row[n]:.6g}" for n in names)])
    labels = np.array([image.referable for image in images], dtype=int)
    curves = {"referral score (CV)": (scores, metrics["score"]["auc"])}
    curves |= {name: (_column(rows, SINGLE_FEATURES[name]), m["auc"]) for name, m in metrics["single_features"].items()}
    point = (1 - metrics["score"]["specificity"], metrics["score"]["sensitivity"])
    plot_roc(out / "roc.png", labels, curves, point)
    grades = np.array([image.grade for image in images])
    plot_score_by_grade(out / "score_by_grade.png", grades, scores, metrics["score"]["operating_point_final"])


def format_table(metrics: dict) -> str:
    s = metrics["score"]
    lines = [
        "| score or rule | ROC AUC (95% CI) | sensitivity (95% CI) | specificity (95% CI) |",
        "|---|---|---|---|",
        f"| referral score, cross-validated | {_auc(s)} | {_rate(s, 'sensitivity')} | {_rate(s, 'specificity')} |",
    ]
    lines += [f"| {name} (single feature) | {_auc(m)} | | |" for name, m in metrics["single_features"].items()]
    lines += [f"| rule: {name} | | {_rate(m, 'sensitivity')} | {_rate(m, 'specificity')} |" for name, m in metrics["rules"].items()]
    if "macular_oedema" in metrics:
        m = metrics["macular_oedema"]
        stored = f", stored with operating point {m['operating_point_final']:.3f}" if m.get("fitted_score") else ""
        lines.append(f"| the same features for {m['target']}, cross-validated{stored} | {_auc(m)} | {_rate(m, 'sensitivity')} | "
                     f"{_rate(m, 'specificity')} |")
    return "\n".join(lines)


def _auc(m: dict) -> str:
    return f"{m['auc']:.3f} ({m['auc_ci95'][0]:.3f}-{m['auc_ci95'][1]:.3f})"


def _rate(m: dict, key: str) -> str:
    low, high = m[f"{key}_ci95"]
    return f"{m[key]:.3f} ({low:.3f}-{high:.3f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        images = list_graded(args.data)[: args.limit]
        checkpoint = load_for_inference(args.checkpoint, resolve_device(args.device), args.backend)
        digest = model_digest(args.checkpoint)
        args.features = args.features or default_features(checkpoint.config.lesions)
        missing = sorted({feature_lesion(name) for name in args.features} - set(checkpoint.config.lesions))
        if missing:
            raise CheckpointError(f"--features: the model does not segment {', '.join(missing)}")
    except (DatasetLayoutError, CheckpointError, RuntimeError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    tiles = TileSettings(precision=args.precision)
    features = extract_features(images, checkpoint, digest, tiles, args.cache, not args.no_progress)
    rows = [features[image.name] for image in images]
    metrics, referral, oedema = validate(images, rows, args)
    write_report(args.out, images, rows, metrics, referral.scores)
    table = format_table(metrics)
    (args.out / "table.md").write_text(table + "\n")
    print(table)
    print(f"operating point of the refitted score: {referral.score.operating_point:.4f}; report in {args.out}")
    if oedema is not None:
        print(f"operating point of the refitted macular-oedema risk score: {oedema.score.operating_point:.4f}")
    if args.write:
        write_referral(args.checkpoint, referral.score.to_dict(), None if oedema is None else oedema.score.to_dict())
        print(f"referral score{'' if oedema is None else ' and macular-oedema risk score'} written into {args.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
