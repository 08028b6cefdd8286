"""``redseg-evaluate``: pixel-pooled IDRiD metrics of a checkpoint on an IDRiD-layout folder.

Every image is segmented at its original resolution and its pixels are added to per-lesion
score histograms (``PRAccumulator``), so memory does not grow with the number of images.
Writes ``metrics.json``, ``per_image.csv`` and ``pr_curves.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from model.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from model.cli_help import plain_help
from model.config import LESIONS
from model.devices import resolve_device
from model.fov import fov_mask
from model.inference import TileSettings, predict_probabilities
from model.tta import TTA_MODES
from training.data.idrid import (DEFAULT_HOLDOUT, DEFAULT_ROOT, DatasetLayoutError, Sample, list_samples, load_sample,
                            split_holdout)
from training.evaluation.metrics import PUBLISHED_AUC_PR, PRAccumulator
from training.evaluation.pr_plots import plot_pr_curves

Predictor = Callable[[np.ndarray], np.ndarray]
"""RGB uint8 (H, W, 3) -> per-lesion probabilities float32 (2, H, W) in LESIONS order."""


@dataclass
class Evaluation:
    pooled: dict[str, PRAccumulator]
    without_fov: dict[str, PRAccumulator] | None = None
    """With ``compare_fov``: the same predictions before zeroing outside the field of view."""
    per_image: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _accumulators() -> dict[str, PRAccumulator]:
    return {lesion: PRAccumulator() for lesion in LESIONS}


def evaluate_samples(
    samples: Sequence[Sample],
    predict: Predictor,
    thresholds: Mapping[str, float],
    compare_fov: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Run ``predict`` on every sample and pool its pixels per lesion.

    With ``compare_fov`` the predictor must not mask the field of view itself: the pooled
    metrics are then those of its output zeroed outside ``fov_mask`` of the full-resolution
    image, and ``without_fov`` those of the raw output, from one prediction per image.
    """
    start = time.perf_counter()
    result = Evaluation(pooled=_accumulators(), without_fov=_accumulators() if compare_fov else None)
    for sample in tqdm(samples, desc="evaluate", unit="image", disable=not progress):
        image, masks = load_sample(sample)
        probabilities = predict(image)
        if probabilities.shape != masks.shape:
            raise ValueError(f"{sample.name}: prediction {probabilities.shape} does not match masks {masks.shape}")
        row: dict = {"image": sample.name}
        if compare_fov:
            for lesion, probability, mask in zip(LESIONS, probabilities, masks):
                result.without_fov[lesion].update(probability, mask)
            probabilities = probabilities * fov_mask(image)
        for lesion, probability, mask in zip(LESIONS, probabilities, masks):
            single = PRAccumulator()
            single.update(probability, mask)
            result.pooled[lesion].merge(single)
            row[lesion] = _image_figures(single, thresholds[lesion])
        result.per_image.append(row)
    result.seconds = time.perf_counter() - start
    return result


def _image_figures(acc: PRAccumulator, threshold: float) -> dict:
    return {
        "positive_pixels": acc.num_positive,
        "prevalence": acc.num_positive / max(acc.num_pixels, 1),
        "average_precision": acc.average_precision(),
        "auc_pr_idrid": acc.auc_pr_idrid(),
        **acc.at_threshold(threshold),
    }


def lesion_report(acc: PRAccumulator, threshold: float) -> dict:
    """Pooled figures of one lesion: at the operating threshold, both AUCs, and the best-F1 point."""
    return {
        **acc.summary(threshold),
        "total_pixels": acc.num_pixels,
        "prevalence": acc.num_positive / max(acc.num_pixels, 1),
        "best_f1": acc.best_f1(),
    }


def _finite(value):
    """JSON has no NaN: an undefined figure (e.g. AP without positives) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_report(
    out: str | Path,
    evaluation: Evaluation,
    thresholds: Mapping[str, float],
    header: Mapping,
    title: str,
) -> dict:
    """Write metrics.json, per_image.csv and pr_curves.png (plus pr_curves_without_fov.png) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        **header,
        "lesions": {lesion: lesion_report(acc, thresholds[lesion]) for lesion, acc in evaluation.pooled.items()},
    }
    if evaluation.without_fov is not None:
        report["without_fov"] = {
            lesion: lesion_report(acc, thresholds[lesion]) for lesion, acc in evaluation.without_fov.items()
        }
    report["per_image"] = evaluation.per_image
    report["published_auc_pr_idrid_test"] = PUBLISHED_AUC_PR
    report["seconds"] = round(evaluation.seconds, 2)
    report = _finite(report)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_csv(out / "per_image.csv", evaluation.per_image, thresholds)
    plot_pr_curves(out / "pr_curves.png", evaluation.pooled, thresholds, title=title)
    if evaluation.without_fov is not None:
        plot_pr_curves(out / "pr_curves_without_fov.png", evaluation.without_fov, thresholds, title=f"{title}, no FOV mask")
    return report


def _write_csv(path: Path, rows: list[dict], thresholds: Mapping[str, float]) -> None:
    columns = ["image", "lesion", "positive_pixels", "prevalence", "average_precision", "auc_pr_idrid",
               "threshold", "precision", "recall", "f1"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            for lesion in LESIONS:
                figures = {k: v for k, v in row[lesion].items() if k in columns}
                writer.writerow({"image": row["image"], "lesion": lesion, "threshold": thresholds[lesion], **figures})


def format_summary(report: Mapping) -> str:
    lines = [f"{'lesion':6} {'thr':>6} {'P':>7} {'R':>7} {'F1':>7} {'AUC_PR':>7} {'AP':>7}   best F1 (thr P R F1)"]
    for section, suffix in (("lesions", ""), ("without_fov", " (no FOV)")):
        for lesion, m in report.get(section, {}).items():
            best = m["best_f1"]
            lines.append(
                f"{lesion:6} {m['threshold']:6.3f} {m['precision']:7.4f} {m['recall']:7.4f} {m['f1']:7.4f} "
                f"{_num(m['auc_pr_idrid'])} {_num(m['average_precision'])}   "
                f"{best['threshold']:.3f} {best['precision']:.4f} {best['recall']:.4f} {best['f1']:.4f}{suffix}"
            )
    return "\n".join(lines)


def _num(value) -> str:
    return f"{value:7.4f}" if value is not None else "    n/a"


def add_data_arguments(parser: argparse.ArgumentParser, out_help: str = "folder for metrics.json, per_image.csv, PNGs") -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="IDRiD root folder (official layout)")
    parser.add_argument("--split", default="train", help="'train', 'test' or the split's folder name")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--images", help="comma-separated image names, e.g. IDRiD_05,IDRiD_10")
    which.add_argument("--holdout", action="store_true",
                       help=f"only the default hold-out images ({DEFAULT_HOLDOUT[0]}..{DEFAULT_HOLDOUT[-1]}, every 5th)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def select_samples(args: argparse.Namespace) -> list[Sample]:
    samples = list_samples(args.data, args.split)
    if args.holdout:
        return split_holdout(samples)[1]
    if args.images:
        names = [n.strip() for n in args.images.split(",") if n.strip()]
        return sorted(split_holdout(samples, names)[1], key=lambda s: s.name)
    return samples


def data_header(args: argparse.Namespace, samples: Sequence[Sample]) -> dict:
    return {
        "data": {
            "root": str(args.data),
            "split": args.split,
            "selection": "holdout" if args.holdout else ("images" if args.images else "all"),
            "images": [s.name for s in samples],
        }
    }


def describe_selection(args: argparse.Namespace, samples: Sequence[Sample]) -> str:
    part = " hold-out" if args.holdout else ""
    return f"IDRiD {args.split}{part} ({len(samples)} images)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redseg-evaluate", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, metavar="PATH",
                        help="the RedSeg checkpoint to evaluate (default: the bundled model)")
    add_data_arguments(parser)
    fov = parser.add_mutually_exclusive_group()
    fov.add_argument("--no-fov", action="store_true", help="do not zero the probabilities outside the field of view")
    fov.add_argument("--compare-fov", action="store_true",
                     help="also report the metrics without the FOV mask, from the same predictions")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--tile-size", type=int, default=TileSettings.tile_size, help="largest tile side at the working scale")
    parser.add_argument("--batch-size", type=int, default=TileSettings.batch_size, help="tiles per forward pass")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32 (default); fp32 forces it")
    parser.add_argument("--tta", choices=sorted(TTA_MODES), default="none",
                        help="test-time augmentation: average the maps over flipped/rotated views (default none)")
    parser.add_argument("--raw", action="store_true", help="the network's raw scores, without the checkpoint's calibration")
    args = parser.parse_args(argv)

    try:
        samples = select_samples(args)
        checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    except (DatasetLayoutError, CheckpointError, ValueError, RuntimeError) as exc:
        print(f"redseg-evaluate: error: {exc}", file=sys.stderr)
        return 2
    use_fov = not args.no_fov
    settings = TileSettings(tile_size=args.tile_size, batch_size=args.batch_size, fov_mask=use_fov and not args.compare_fov,
                            precision=args.precision, tta=args.tta)
    calibration = None if args.raw else checkpoint.calibration
    thresholds = checkpoint.raw_thresholds if args.raw else checkpoint.thresholds
    evaluation = evaluate_samples(
        samples,
        lambda image: predict_probabilities(checkpoint.model, image, settings, calibration),
        thresholds,
        compare_fov=args.compare_fov,
        progress=not args.no_progress,
    )
    header = {
        "model": {
            "checkpoint": str(args.checkpoint),
            "name": checkpoint.name,
            "version": checkpoint.version,
            "sha256": checkpoint.sha256,
            "thresholds": thresholds,
            "config": checkpoint.config.to_dict(),
            "calibrated": calibration is not None,
        },
        "tta": args.tta,
        **data_header(args, samples),
        "fov_mask": "full resolution (compare mode)" if args.compare_fov else use_fov,
        "tiles": {"tile_size": args.tile_size, "batch_size": args.batch_size},
    }
    title = f"{checkpoint.name} {checkpoint.version} on {describe_selection(args, samples)}"
    report = write_report(args.out, evaluation, thresholds, header, title)
    print(format_summary(report))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
