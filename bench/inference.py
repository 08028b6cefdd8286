"""Inference benchmark: our tiled pipeline against a whole-image forward and MONAI's sliding window.

    .venv/bin/python bench/inference.py [--image assets/IDRiD_05.jpg] [--repeats 3] [--device cpu|cuda]

Measured in one run on the same model, tile settings and image, interleaved, medians reported:
(a) one whole-image forward at the working scale (the floor), (b) ``predict_probabilities`` end to
end (resize, tiles, blending, FOV mask, resize back to full size), (c) MONAI's
``sliding_window_inference`` on the same working-scale tensor with the same tile size, overlap and
batch. Peak memory is the resident set (CPU) or the allocator's peak (CUDA) of each variant.

``--fov-auc-pr IDRID_DIR`` instead measures pooled-pixel AUC_PR (average precision) per lesion with
and without the field-of-view mask, to check that the mask does not hurt.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.config import LESIONS, RedSegConfig  # noqa: E402
from model.imageio import read_image  # noqa: E402
from model.inference import TileSettings, _autocast, predict_probabilities, working_size  # noqa: E402
from model.network import RedSeg  # noqa: E402


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_model(args: argparse.Namespace, device: torch.device) -> tuple[RedSeg, str]:
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if args.checkpoint or (DEFAULT_CHECKPOINT.is_file() and not args.random):
        return load_checkpoint(checkpoint, device).model, f"checkpoint {checkpoint.name}"
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=args.width)).to(device).eval()
    return model, f"random init, width={args.width}"


def reset_peak() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) so each variant reports its own peak."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn, device: torch.device) -> tuple[float, int]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, peak_bytes(device)


def benchmark(args: argparse.Namespace) -> None:
    from monai.inferers import sliding_window_inference

    device = resolve_device(args.device)
    model, source = build_model(args, device)
    settings = TileSettings(
        tile_size=args.tile_size or TileSettings.tile_size,
        min_overlap=args.min_overlap if args.min_overlap is not None else TileSettings.min_overlap,
        batch_size=args.batch_size or TileSettings.batch_size,
    )
    image = read_image(args.image)
    height, width = image.shape[:2]
    small_h, small_w = working_size(height, width, model.config.working_long_side)
    small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
    working = model.normalize(torch.from_numpy(small).to(device).permute(2, 0, 1)[None])

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with _autocast(device, settings.amp):
            return torch.sigmoid(model(batch).fused.float())

    def whole() -> None:
        with torch.inference_mode():
            predictor(working).cpu()

    def ours() -> None:
        predict_probabilities(model, image, settings)

    def monai() -> None:
        with torch.inference_mode():
            sliding_window_inference(
                working,
                roi_size=(settings.tile_size, settings.tile_size),
                sw_batch_size=settings.batch_size,
                predictor=predictor,
                overlap=settings.min_overlap / settings.tile_size,
                mode="gaussian",
            ).cpu()

    variants = {"(a) whole-image forward": whole, "(b) predict_probabilities": ours, "(c) MONAI sliding window": monai}
    times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {name: 0 for name in variants}
    for name, fn in variants.items():
        fn()  # warm-up: allocator, kernels, lazy initialisation
    for _ in range(args.repeats):
        for name, fn in variants.items():
            seconds, peak = timed(fn, device)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], peak)

    medians = {name: statistics.median(values) for name, values in times.items()}
    a, b, c = medians.values()
    memory = "peak CUDA allocated" if device.type == "cuda" else "peak RSS"
    print(
        f"image {Path(args.image).name} {width}x{height} -> working {small_w}x{small_h}; {source}; "
        f"device {device} ({torch.get_num_threads()} threads); tiles {settings.tile_size} "
        f"overlap {settings.min_overlap} batch {settings.batch_size}; median of {args.repeats}, interleaved"
    )
    print()
    print(f"| variant | median s | runs s | {memory} MB |")
    print("|---|---:|---|---:|")
    for name in variants:
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"| {name} | {medians[name]:.3f} | {runs} | {peaks[name] / 2**20:.0f} |")
    print()
    print(f"(b)/(a) = {b / a:.3f} (target <= 1.15); (b)/(c) = {b / c:.3f} (target <= 1.0)")


def idrid_pairs(root: Path) -> list[tuple[Path, dict[str, Path]]]:
    seg = root / "A. Segmentation"
    images = sorted((seg / "1. Original Images" / "a. Training Set").glob("IDRiD_*.jpg"))
    truth = seg / "2. All Segmentation Groundtruths" / "a. Training Set"
    folders = {"MA": "1. Microaneurysms", "HE": "2. Haemorrhages"}
    return [(img, {lesion: truth / folders[lesion] / f"{img.stem}_{lesion}.tif" for lesion in LESIONS}) for img in images]


def average_precision(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float:
    """Pooled-pixel average precision from histograms of the 16-bit probability (bin = p * 65535)."""
    tp = np.cumsum(positive_hist[::-1], dtype=np.float64)
    fp = np.cumsum(negative_hist[::-1], dtype=np.float64)
    if tp[-1] == 0:
        return float("nan")
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def fov_auc_pr(args: argparse.Namespace) -> None:
    """AUC_PR per lesion over IDRiD images with and without the FOV mask (pooled pixels)."""
    device = resolve_device(args.device)
    model, source = build_model(args, device)
    pairs = idrid_pairs(Path(args.fov_auc_pr))[: args.limit or None]
    if not pairs:
        raise SystemExit(f"no IDRiD images under {args.fov_auc_pr}")
    hists = {(fov, lesion, label): np.zeros(65536, np.int64) for fov in (True, False) for lesion in LESIONS for label in (0, 1)}
    for image_path, masks in pairs:
        image = read_image(image_path)
        for fov in (True, False):
            probabilities = predict_probabilities(model, image, TileSettings(fov_mask=fov))
            for channel, lesion in enumerate(LESIONS):
                truth = cv2.imread(str(masks[lesion]), cv2.IMREAD_GRAYSCALE)
                truth = np.zeros(image.shape[:2], bool) if truth is None else truth > 0
                bins = np.rint(probabilities[channel] * 65535).astype(np.int64)
                for label in (0, 1):
                    hists[fov, lesion, label] += np.bincount(bins[truth == bool(label)], minlength=65536)
    print(f"{len(pairs)} images; {source}")
    print("| lesion | AUC_PR with FOV mask | AUC_PR without |")
    print("|---|---:|---:|")
    for lesion in LESIONS:
        with_fov = average_precision(hists[True, lesion, 1], hists[True, lesion, 0])
        without = average_precision(hists[False, lesion, 1], hists[False, lesion, 0])
        print(f"| {lesion} | {with_fov:.4f} | {without:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--checkpoint", help="default: the bundled model if present, else a random full-width network")
    parser.add_argument("--random", action="store_true", help="use a random network even if the bundled model exists")
    parser.add_argument("--width", type=float, default=1.0, help="width of the random network")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--min-overlap", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--fov-auc-pr", metavar="IDRID_DIR", help="measure AUC_PR with and without the FOV mask")
    parser.add_argument("--limit", type=int, default=0, help="with --fov-auc-pr: use the first N images only")
    args = parser.parse_args()
    if args.fov_auc_pr:
        fov_auc_pr(args)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
