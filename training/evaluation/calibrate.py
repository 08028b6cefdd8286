"""``redseg-calibrate``: fit a checkpoint's per-lesion probability calibration on hold-out images.

For each test-time augmentation mode, every hold-out image is segmented with the network's raw
scores; the pixels inside the field of view go into per-image histograms of logit(score) for lesion
and background pixels. A Platt scaling ``sigmoid(a * logit + b)`` per lesion is fitted on all of
them and written into the checkpoint (in place, or to ``--write``) with operating thresholds on the
calibrated scale (the best F1 on the hold-out among multiples of 0.01). Fitting and measuring on the
same images flatters the result, so the reported calibration error is cross-fitted: each image is
calibrated by a fit on the other folds. Writes ``calibration.json`` and ``reliability.png`` to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.calibration import LOGIT_LIMIT, Calibration, Platt
from model.checkpoint import DEFAULT_CHECKPOINT
from model.cli_help import plain_help
from model.devices import resolve_device
from model.fov import fov_mask
from model.screening.features import feature_lesion
from training.evaluation.evaluate import add_data_arguments, select_samples
from training.data.idrid import load_sample

BINS = 3200
"""Histogram bins over [-LOGIT_LIMIT, LOGIT_LIMIT] logits (0.01 wide)."""
CENTRES = np.linspace(-LOGIT_LIMIT, LOGIT_LIMIT, BINS + 1)[:-1] + LOGIT_LIMIT / BINS
RELIABILITY_BINS = 15


def logit_histograms(probabilities: np.ndarray, masks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Counts (lesion, [background, lesion], BINS) of the pixels inside ``valid``, by logit(score)."""
    counts = np.zeros((len(probabilities), 2, BINS), dtype=np.int64)
    for channel, (probability, mask) in enumerate(zip(probabilities, masks)):
        p = np.clip(probability[valid].astype(np.float64), 1e-7, 1 - 1e-7)
        index = np.clip(((np.log(p) - np.log1p(-p) + LOGIT_LIMIT) / (2 * LOGIT_LIMIT) * BINS).astype(np.int64), 0, BINS - 1)
        target = mask[valid].astype(bool)
        counts[channel, 0] = np.bincount(index[~target], minlength=BINS)
        counts[channel, 1] = np.bincount(index[target], minlength=BINS)
    return counts


def fit_platt(counts: np.ndarray, iterations: int = 50) -> Platt:
    """Weighted logistic regression of lesion on logit(score), from (2, BINS) counts, by Newton's method."""
    negative, positive = counts.astype(np.float64)
    total = negative + positive
    keep = total > 0
    z, y, w = CENTRES[keep], positive[keep] / total[keep], total[keep] / total.sum()
    design = np.column_stack([z, np.ones_like(z)])

    def loss(params: np.ndarray) -> float:  # mean binary cross-entropy, computed stably
        logits = design @ params
        return float(np.sum(w * (np.logaddexp(0, logits) - y * logits)))

    prior = min(max(positive.sum() / total.sum(), 1e-12), 1 - 1e-12)
    params = np.array([1.0, np.log(prior / (1 - prior))])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ params, -500, 500)))
        gradient = design.T @ (w * (p - y))
        hessian = design.T @ (design * (w * p * (1 - p))[:, None]) + 1e-12 * np.eye(2)
        step, before = np.linalg.solve(hessian, gradient), loss(params)
        while loss(params - step) > before and np.abs(step).max() > 1e-12:
            step /= 2  # damped Newton: never let the loss rise
        params -= step
        if np.abs(step).max() < 1e-9:
            break
    return Platt(float(params[0]), float(params[1]))


def calibrated_centres(platt: Platt | None) -> np.ndarray:
    """The probability each logit bin stands for: raw (the sigmoid) or after ``platt``."""
    z = CENTRES if platt is None else platt.slope * CENTRES + platt.intercept
    return 1 / (1 + np.exp(-np.clip(z, -500, 500)))


def reliability(counts: np.ndarray, probability: np.ndarray) -> dict:
    """Per equal-width probability bin: pixels, mean predicted probability, lesion frequency; and the ECE."""
    negative, positive = counts.astype(np.float64)
    total = negative + positive
    which = np.minimum((probability * RELIABILITY_BINS).astype(int), RELIABILITY_BINS - 1)
    pixels = np.bincount(which, weights=total, minlength=RELIABILITY_BINS)
    predicted = np.bincount(which, weights=total * probability, minlength=RELIABILITY_BINS) / np.maximum(pixels, 1)
    observed = np.bincount(which, weights=positive, minlength=RELIABILITY_BINS) / np.maximum(pixels, 1)
    ece = float(np.sum(pixels * np.abs(predicted - observed)) / pixels.sum())
    return {"ece": ece, "pixels": pixels.tolist(), "predicted": predicted.tolist(), "observed": observed.tolist()}


def cross_fitted(per_image: np.ndarray, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts re-binned by the probability each image gets from a fit on the other folds' images.

    ``per_image`` is (images, 2, BINS) for one lesion; returns (2, BINS) counts and the matching
    probabilities (one row per fold, concatenated along the bins).
    """
    fold_of = np.arange(len(per_image)) % folds
    counts, probabilities = [], []
    for fold in range(folds):
        inside = fold_of == fold
        if not inside.any():
            continue
        platt = fit_platt(per_image[~inside].sum(axis=0))
        counts.append(per_image[inside].sum(axis=0))
        probabilities.append(calibrated_centres(platt))
    return np.concatenate(counts, axis=1), np.concatenate(probabilities)


def best_f1_threshold(counts: np.ndarray, probability: np.ndarray) -> dict:
    """The calibrated threshold (a multiple of 0.01) with the best F1, with its precision and recall."""
    negative, positive = counts.astype(np.float64)
    best = {"threshold": 0.5, "precision": 0.0, "recall": 0.0, "f1": -1.0}
    for threshold in np.round(np.arange(0.01, 1.0, 0.01), 2):
        called = probability >= threshold
        tp, fp = positive[called].sum(), negative[called].sum()
        precision, recall = tp / max(tp + fp, 1), tp / max(positive.sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        if f1 > best["f1"]:
            best = {"threshold": float(threshold), "precision": precision, "recall": recall, "f1": f1}
    return best


def collect(checkpoint, samples, settings, progress: bool) -> np.ndarray:
    """Per-image logit histograms (images, lesions, 2, BINS) of the raw scores under ``settings``."""
    from model.inference import predict_probabilities

    histograms = []
    for sample in tqdm(samples, desc=f"hold-out, tta {settings.tta}", unit="image", disable=not progress, file=sys.stderr):
        image, masks = load_sample(sample)
        probabilities = predict_probabilities(checkpoint.model, image, settings)
        histograms.append(logit_histograms(probabilities, masks, fov_mask(image)))
    return np.stack(histograms)


def fit_mode(per_image: np.ndarray, folds: int, lesions: Sequence[str]) -> tuple[dict[str, Platt], dict]:
    """Each lesion's Platt scaling on all images, and its reliability raw, cross-fitted and in-sample."""
    scalings, report = {}, {}
    for channel, lesion in enumerate(lesions):
        lesion_images = per_image[:, channel]
        pooled = lesion_images.sum(axis=0)
        scalings[lesion] = fit_platt(pooled)
        counts, probabilities = cross_fitted(lesion_images, folds)
        centres = calibrated_centres(scalings[lesion])
        report[lesion] = {
            "platt": {"slope": scalings[lesion].slope, "intercept": scalings[lesion].intercept},
            "raw": reliability(pooled, calibrated_centres(None)),
            "cross_fitted": reliability(counts, probabilities),
            "in_sample": reliability(pooled, centres),
            "best_f1": best_f1_threshold(pooled, centres),
        }
    return scalings, report


def lesions_to_fit(checkpoint, asked: tuple[str, ...] | None) -> tuple[str, ...]:
    """The lesions to fit, in the model's order: those asked, or all; all where the checkpoint has no calibration yet."""
    lesions = checkpoint.config.lesions
    unknown = sorted(set(asked or ()) - set(lesions))
    if unknown:
        raise ValueError(f"--lesions: the model segments {', '.join(lesions)}, not {', '.join(unknown)}")
    if not asked or checkpoint.calibration is None:
        return lesions
    return tuple(lesion for lesion in lesions if lesion in asked)


def referral_reads(referral: dict | None, lesions: tuple[str, ...]) -> bool:
    """Whether a stored referral score has features of any of ``lesions``."""
    return referral is not None and any(feature_lesion(name) in lesions for name in referral.get("features", lesions))


def keep_others(checkpoint, calibration: Calibration, thresholds: dict, fitted: tuple[str, ...]) -> tuple[Calibration, dict]:
    """The new calibration and thresholds, with the checkpoint's own for every lesion not in ``fitted``."""
    if fitted == checkpoint.config.lesions:
        return calibration, thresholds
    old = checkpoint.calibration
    modes = {
        mode: {lesion: (scalings[lesion] if lesion in fitted else old.for_mode(mode)[lesion]) for lesion in scalings}
        for mode, scalings in calibration.modes.items()
    }
    kept = {lesion: (thresholds[lesion] if lesion in fitted else checkpoint.thresholds[lesion]) for lesion in thresholds}
    return Calibration(modes, calibration.raw_thresholds, calibration.fitted_on | {"lesions": list(fitted)}), kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redseg-calibrate", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, metavar="PATH",
                        help="the checkpoint to calibrate (default: the bundled model)")
    parser.add_argument("--write", type=Path, metavar="PATH", help="write the calibrated checkpoint here (default: in place)")
    add_data_arguments(parser, out_help="folder for calibration.json and reliability.png")
    parser.add_argument("--tta", default="none,hflip,flips",
                        help="comma-separated test-time augmentation modes to fit (always includes none)")
    parser.add_argument("--folds", type=int, default=5, help="folds of images for the cross-fitted calibration error")
    parser.add_argument("--lesions", type=lambda text: tuple(t.strip().upper() for t in text.split(",") if t.strip()),
                        metavar="LIST", help="fit only these lesions, e.g. EX,SE (branches just added); the others keep "
                        "their calibration, thresholds and the referral score (default: every lesion of the model)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="the network's precision, as the service will run it (default auto)")
    args = parser.parse_args(argv)
    args.holdout = not args.images  # the hold-out unless --images names others

    from model.checkpoint import (
        LEGACY_REFERRAL_KEY, MACULAR_OEDEMA_KEY, REFERRAL_KEY, CheckpointError, load_checkpoint, update_metadata,
    )
    from model.inference import TileSettings
    from model.tta import check_tta
    from training.data.idrid import DatasetLayoutError
    from training.evaluation.reliability_plot import plot_reliability

    try:
        modes = ["none", *(check_tta(m.strip()) for m in args.tta.split(",") if m.strip() not in ("", "none"))]
        checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
        samples = select_samples(args, checkpoint.config.lesions)
        fitted = lesions_to_fit(checkpoint, args.lesions)
    except (DatasetLayoutError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"redseg-calibrate: error: {exc}", file=sys.stderr)
        return 2
    if len(samples) < args.folds:
        print(f"redseg-calibrate: error: {len(samples)} images cannot make {args.folds} folds", file=sys.stderr)
        return 2
    scalings, reports = {}, {}
    for mode in modes:
        settings = TileSettings(fov_mask=True, precision=args.precision, tta=mode)
        per_image = collect(checkpoint, samples, settings, progress=not args.no_progress)
        scalings[mode], reports[mode] = fit_mode(per_image, args.folds, checkpoint.config.lesions)
    thresholds = {lesion: reports["none"][lesion]["best_f1"]["threshold"] for lesion in checkpoint.config.lesions}
    images = [s.name for s in samples]
    calibration = Calibration(scalings, checkpoint.raw_thresholds, {"images": images, "folds": args.folds,
                                                                     "precision": args.precision})
    calibration, thresholds = keep_others(checkpoint, calibration, thresholds, fitted)
    stale = any(referral_reads(score, fitted) for score in (checkpoint.referral, checkpoint.macular_oedema))  # it read maps now recalibrated
    drop = (REFERRAL_KEY, LEGACY_REFERRAL_KEY, MACULAR_OEDEMA_KEY) if stale else ()  # both scores are fitted together
    written = update_metadata(args.checkpoint, args.write, drop=drop, calibration=calibration.to_dict(), thresholds=thresholds)
    if stale:
        print(f"redseg-calibrate: {written} no longer carries its referral score (nor its macular-oedema risk score), "
              "fitted on uncalibrated maps: "
              "fit it again (redseg-screen --write, make screen)", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"checkpoint": str(written), "images": images, "thresholds": thresholds, "modes": reports}
    (args.out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    curves = {lesion: {f"raw, tta {mode}": reports[mode][lesion]["raw"] for mode in modes} for lesion in fitted}
    for lesion in fitted:
        curves[lesion] |= {f"calibrated (cross-fitted), tta {m}": reports[m][lesion]["cross_fitted"] for m in modes}
    plot_reliability(args.out / "reliability.png", curves, f"{checkpoint.name} {checkpoint.version}: {len(images)} hold-out images")
    for mode in modes:
        for lesion in fitted:
            r = reports[mode][lesion]
            print(f"tta {mode:8} {lesion}: ECE raw {r['raw']['ece']:.5f}, calibrated {r['cross_fitted']['ece']:.5f} "
                  f"(cross-fitted; {r['in_sample']['ece']:.5f} in-sample); best-F1 threshold {r['best_f1']['threshold']:.2f}")
    print(f"wrote {written} (thresholds {thresholds}) and {args.out / 'calibration.json'}, {args.out / 'reliability.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
