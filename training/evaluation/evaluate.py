"""``redseg-evaluate``: pixel, lesion-level and per-image metrics of a checkpoint on IDRiD or any labelled set.

Every image is segmented at its original resolution; its pixels are added to per-lesion score
histograms (``PRAccumulator``), so memory does not grow with the number of images, and its
ground-truth regions and served regions to the lesion-level FROC (``froc.FROCAccumulator``).
The data is an IDRiD-layout folder (``--data``) or a labelled folder (``--photos`` and
``--masks``, ``labelled_folder``). Writes ``metrics.json``, ``per_image.csv``, ``pr_curves.png``
and ``froc.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import torch

from model.backends import BACKENDS, backend_of, load_for_inference
from model.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError
from model.cli_help import plain_help
from model.config import ALL_LESIONS, LESIONS
from model.devices import resolve_device
from model.fov import fov_mask
from model.inference import TileSettings, predict_probabilities
from model.screening.features import LEVELS, count_lesions
from model.tta import TTA_MODES
from training.data.idrid import (DEFAULT_HOLDOUT, DEFAULT_ROOT, DatasetLayoutError, Sample, list_samples, load_sample,
                            split_holdout)
from training.evaluation.froc import FROCAccumulator
from training.evaluation.froc_plots import plot_froc
from training.evaluation.image_level import SCORE_LABELS, THIRD_SCORE, image_level_report
from training.evaluation.labelled_folder import (FolderSample, Labelled, add_folder_arguments, folder_header, folder_name,
                                                 folder_samples)
from training.evaluation.metrics import PUBLISHED_AUC_PR, PRAccumulator
from training.evaluation.pr_plots import plot_pr_curves

Predictor = Callable[[np.ndarray], np.ndarray]
"""RGB uint8 (H, W, 3) -> per-lesion probabilities float32 (C, H, W), one channel per lesion of the model."""

LOOK_ALIKE = {"MA": "HE", "HE": "MA", "EX": "SE", "SE": "EX"}
"""A served region on the look-alike lesion's ground truth is not counted as a false one (where the set marks it)."""

AnySample = Sample | FolderSample
"""An IDRiD sample or a labelled folder's photograph."""


@dataclass
class Evaluation:
    pooled: dict[str, PRAccumulator]
    without_fov: dict[str, PRAccumulator] | None = None
    """With ``compare_fov``: the same predictions before zeroing outside the field of view."""
    regions: dict[str, FROCAccumulator] = field(default_factory=dict)
    """Per lesion, the lesion-level FROC of the served mask's regions."""
    regions_off_markings: dict[str, FROCAccumulator] = field(default_factory=dict)
    """Soft maps only: the same, where only a served region off every grader's marking is false."""
    per_image: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _accumulators(lesions: Sequence[str] = LESIONS) -> dict[str, PRAccumulator]:
    return {lesion: PRAccumulator() for lesion in lesions}


def marked_lesions(samples: Sequence[AnySample], segmented: Sequence[str] = LESIONS) -> tuple[str, ...]:
    """The lesions both the set marks and the model segments (``segmented``, in its order)."""
    return tuple(lesion for lesion in segmented if samples and lesion in samples[0].mask_paths)


def load_labelled(sample: AnySample) -> Labelled:
    """A sample's photograph and ground truth, from an IDRiD layout or a labelled folder."""
    if isinstance(sample, FolderSample):
        return sample.load()
    image, masks = load_sample(sample)
    return Labelled(image, dict(zip(sample.mask_paths, masks)))


def evaluate_samples(
    samples: Sequence[AnySample],
    predict: Predictor,
    thresholds: Mapping[str, float],
    compare_fov: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Run ``predict`` on every sample and pool its pixels and regions per lesion.

    With ``compare_fov`` the predictor must not mask the field of view itself: the pooled
    metrics are then those of its output zeroed outside ``fov_mask`` of the full-resolution
    image, and ``without_fov`` those of the raw output, from one prediction per image.
    A sample's own field-of-view mask (a labelled folder's ``--fov-mask``) limits the pixels
    scored and zeroes the probabilities outside it.
    """
    start = time.perf_counter()
    lesions = marked_lesions(samples, list(thresholds))
    result = Evaluation(pooled=_accumulators(lesions), without_fov=_accumulators(lesions) if compare_fov else None,
                        regions={lesion: FROCAccumulator(thresholds[lesion]) for lesion in lesions})
    for sample in tqdm(samples, desc="evaluate", unit="image", disable=not progress):
        labelled = load_labelled(sample)
        probabilities = predict(labelled.image)
        expected = (len(thresholds), *labelled.image.shape[:2])
        if probabilities.shape != expected:
            raise ValueError(f"{sample.name}: prediction {probabilities.shape} does not match masks {expected}")
        result.per_image.append(_score_image(result, sample.name, labelled, probabilities, thresholds))
    result.seconds = time.perf_counter() - start
    return result


def _score_image(result: Evaluation, name: str, labelled: Labelled, probabilities: np.ndarray,
                 thresholds: Mapping[str, float]) -> dict:
    """Add one photograph's pixels and regions to ``result``; its own figures per lesion."""
    row: dict = {"image": name}
    fov = fov_mask(labelled.image)
    if result.without_fov is not None:
        for lesion, acc in result.without_fov.items():
            acc.update(probabilities[list(thresholds).index(lesion)], labelled.truth[lesion], labelled.valid)
        probabilities = probabilities * fov
    if labelled.valid is not None:
        probabilities = probabilities * labelled.valid
    fov_pixels = int(np.count_nonzero(fov))
    for lesion in result.pooled:
        probability, truth = probabilities[list(thresholds).index(lesion)], labelled.truth[lesion]
        partner = labelled.truth.get(LOOK_ALIKE[lesion])
        single = PRAccumulator()
        single.update(probability, truth, labelled.valid)
        result.pooled[lesion].merge(single)
        regions = result.regions[lesion].update(probability, truth, partner)
        row[lesion] = {**_image_figures(single, thresholds[lesion]), "holds_lesion": bool(truth.any()),
                       **asdict(regions), THIRD_SCORE: count_lesions(probability >= LEVELS["p90"], lesion, fov_pixels).count}
        if labelled.marked is not None:
            lenient = result.regions_off_markings.setdefault(lesion, FROCAccumulator(thresholds[lesion]))
            row[lesion]["false_regions_off_markings"] = lenient.update(probability, truth, labelled.marked).false_regions
    return row


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
    """Write metrics.json, per_image.csv, pr_curves.png (plus pr_curves_without_fov.png) and froc.png to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {**header, "lesions": {}}
    for lesion, acc in evaluation.pooled.items():
        report["lesions"][lesion] = {
            **lesion_report(acc, thresholds[lesion]),
            "regions": evaluation.regions[lesion].summary(),
            **({"regions_off_markings": {"false_region": OFF_MARKINGS,
                                         **evaluation.regions_off_markings[lesion].summary()}}
               if lesion in evaluation.regions_off_markings else {}),
            "image_detection": image_level_report([row[lesion] for row in evaluation.per_image], thresholds[lesion]),
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
    plot_froc(out / "froc.png", evaluation.regions, evaluation.per_image, title=title,
              lenient=evaluation.regions_off_markings)
    if evaluation.without_fov is not None:
        plot_pr_curves(out / "pr_curves_without_fov.png", evaluation.without_fov, thresholds, title=f"{title}, no FOV mask")
    return report


OFF_MARKINGS = ("with soft maps, a served region is false only where it touches no pixel that any grader marked "
                "as any of the set's lesions, at any agreement")

CSV_COLUMNS = ["image", "lesion", "positive_pixels", "prevalence", "average_precision", "auc_pr_idrid",
               "threshold", "precision", "recall", "f1", "holds_lesion", "max_probability", "served_regions",
               "lesions_p90", "ground_truth_regions", "found_regions", "false_regions", "false_regions_off_markings"]
"""per_image.csv: one row per photograph and lesion; the region counts are at the operating threshold."""


def _write_csv(path: Path, rows: list[dict], thresholds: Mapping[str, float]) -> None:
    columns = CSV_COLUMNS
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            for lesion in (lesion for lesion in ALL_LESIONS if lesion in row):
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
    for lesion, m in report.get("lesions", {}).items():
        lines.extend(_region_lines(lesion, m))
        if "regions_off_markings" in m:
            off = m["regions_off_markings"]
            lines.append(f"{lesion:6} FROC off every marking {_num(off['froc']['mean_sensitivity'], 4)}; "
                         f"@ {off['at_threshold']['threshold']:.3f}: {_num(off['at_threshold']['sensitivity'], 3)} "
                         f"at {off['at_threshold']['false_regions_per_image']:.2f} false/image")
    return "\n".join(lines)


def _region_lines(lesion: str, m: Mapping) -> list[str]:
    """The lesion-level FROC and the per-image detection of one lesion, as two lines."""
    regions, images = m["regions"], m["image_detection"]
    froc, at, low = regions["froc"], regions["at_threshold"], regions["lowest_threshold"]
    rates = " ".join(_num(v, 3) for v in froc["sensitivity"])
    near = images["at_threshold"]
    labels = list(SCORE_LABELS.values())
    return [
        f"{lesion:6} FROC {_num(froc['mean_sensitivity'], 4)} (sensitivity at 1/8..8 false/image: {rates}; "
        f"{regions['ground_truth_regions']} regions in {regions['images']} images); @ {at['threshold']:.3f}: "
        f"{_num(at['sensitivity'], 3)} at {at['false_regions_per_image']:.2f} false/image; "
        f"@ {low['threshold']:.3f}: {_num(low['sensitivity'], 3)} at {low['false_regions_per_image']:.1f}",
        f"{lesion:6} per image: ROC AUC {_num(images['roc_auc'], 4)} ({labels[0]}; "
        f"{images['images_with_lesion']} of {images['images']} hold it), {_num(images['roc_auc_second_score'], 4)} "
        f"({labels[1]}), {_num(images['roc_auc_third_score'], 4)} ({labels[2]}); "
        f"@ {near['threshold']:.3f}: sensitivity {_num(near['sensitivity'], 3)}, "
        f"specificity {_num(near['specificity'], 3)}",
    ]


def _num(value, digits: int = 4) -> str:
    """A figure for the summary; an undefined one (None in the report, or NaN) is n/a."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a".rjust(digits + 3)
    return f"{value:{digits + 3}.{digits}f}"


def add_data_arguments(parser: argparse.ArgumentParser, out_help: str = "folder for metrics.json, per_image.csv, PNGs") -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="IDRiD root folder (official layout)")
    parser.add_argument("--split", default="train", help="'train', 'test' or the split's folder name")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--images", help="comma-separated image names, e.g. IDRiD_05,IDRiD_10")
    which.add_argument("--holdout", action="store_true",
                       help=f"only the default hold-out images ({DEFAULT_HOLDOUT[0]}..{DEFAULT_HOLDOUT[-1]}, every 5th)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def select_samples(args: argparse.Namespace, lesions: Sequence[str] = LESIONS) -> list[Sample]:
    """The IDRiD samples the arguments select, with the masks of ``lesions``."""
    samples = list_samples(args.data, args.split, tuple(lesions))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redseg-evaluate", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, metavar="PATH",
                        help="the RedSeg checkpoint to evaluate (default: the bundled model)")
    add_data_arguments(parser)
    add_folder_arguments(parser)
    fov = parser.add_mutually_exclusive_group()
    fov.add_argument("--no-fov", action="store_true", help="do not zero the probabilities outside the field of view")
    fov.add_argument("--compare-fov", action="store_true",
                     help="also report the metrics without the FOV mask, from the same predictions")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA if available), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--tile-size", type=int, default=TileSettings.tile_size, help="largest tile side at the working scale")
    parser.add_argument("--batch-size", type=int, default=TileSettings.batch_size, help="tiles per forward pass")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="auto: bf16 where the device computes it natively, else fp32 (default); fp32 forces it")
    parser.add_argument("--tta", choices=sorted(TTA_MODES), default="none",
                        help="test-time augmentation: average the maps over flipped/rotated views (default none)")
    parser.add_argument("--backend", choices=BACKENDS, default=os.environ.get("REDSEG_BACKEND") or "auto",
                        help="the network's engine: auto (OpenVINO int8 on an x86 CPU with openvino installed, else "
                        "torch), torch, openvino-int8 or openvino-bf16")
    parser.add_argument("--raw", action="store_true", help="the network's raw scores, without the checkpoint's calibration")
    return parser


def _model_header(args: argparse.Namespace, checkpoint: Checkpoint, thresholds: Mapping[str, float], calibrated: bool) -> dict:
    return {
        "model": {
            "checkpoint": str(args.checkpoint),
            "name": checkpoint.name,
            "version": checkpoint.version,
            "sha256": checkpoint.sha256,
            "thresholds": thresholds,
            "config": checkpoint.config.to_dict(),
            "calibrated": calibrated,
            "backend": backend_of(checkpoint.model),
        },
        "tta": args.tta,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError(f"--threads must be at least 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        folder = args.photos is not None
        if args.masks and not folder:
            raise ValueError("--masks needs --photos (the labelled folder's photographs)")
        checkpoint = load_for_inference(args.checkpoint, resolve_device(args.device), args.backend)
        samples = folder_samples(args) if folder else select_samples(args, checkpoint.config.lesions)
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
        **_model_header(args, checkpoint, thresholds, calibration is not None),
        **(folder_header(args, samples) if folder else data_header(args, samples)),
        "fov_mask": "full resolution (compare mode)" if args.compare_fov else use_fov,
        "tiles": {"tile_size": args.tile_size, "batch_size": args.batch_size},
    }
    where = f"{folder_name(args)} ({len(samples)} images)" if folder else describe_selection(args, samples)
    report = write_report(args.out, evaluation, thresholds, header, f"{checkpoint.name} {checkpoint.version} on {where}")
    print(format_summary(report))
    print(f"wrote {args.out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
