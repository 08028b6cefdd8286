"""Inference benchmark: our tiled pipeline against a whole-image forward and MONAI's sliding window.

    .venv/bin/python bench/inference.py [--image assets/IDRiD_05.jpg] [--repeats 3] [--device cpu|cuda]

Measured in one run on the same model, tile settings and image, interleaved, medians reported:
(a) the old reference: one whole-image forward at the working scale in fp32 with the NCHW layout;
(a') the same forward on the fast path (batch norm folded into the convs, channels_last, bf16
autocast where native; ``--precision``);
(b) ``predict_probabilities`` end to end on the fast path (resize, tiles, blending, FOV mask, resize
back to full size); (c) MONAI's ``sliding_window_inference`` on the same working-scale tensor with
the same tile size, overlap, batch and fast-path forward. Targets: (b)/(a') <= 1.15, (b)/(c) <= 1.0,
(b)/(a) <= 0.40. Peak memory is the resident set (CPU) or the allocator's peak (CUDA) of each variant.
On the CPU, with ``--backend openvino-int8`` (the default where openvino is installed) or
``openvino-bf16``: (o) the same whole-image forward on that OpenVINO engine and (o')
``predict_probabilities`` on it (``model.backends``; its IR is made first if the checkpoint has none).
Target: (o)/(a') <= 0.45 (int8 against today's torch bf16 forward).

(AUC_PR with and without the field-of-view mask: ``redseg-evaluate --compare-fov``.)
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.cli_help import plain_help  # noqa: E402
from model.config import RedSegConfig  # noqa: E402
from model.devices import resolve_device  # noqa: E402
from model.formats.images import read_image  # noqa: E402
from model.fov import working_mapping  # noqa: E402
from model.inference import TileSettings, predict_probabilities  # noqa: E402
from model.network import RedSeg, fold_batch_norm  # noqa: E402
from model.precision import autocast, to_channels_last, uses_bf16  # noqa: E402


def working_scale_input(model: RedSeg, image) -> torch.Tensor:
    """The photograph mapped to the model's working scale (by its fundus disc, or its long side, as
    ``predict_probabilities`` maps it) and normalised, on the model's device: the whole-image input."""
    small = working_mapping(image, model.config).to_working(image)
    device = next(model.parameters()).device
    return model.normalize(torch.from_numpy(small).to(device).permute(2, 0, 1)[None]).contiguous()


def nchw_reference(checkpoint: Path, device: torch.device) -> RedSeg:
    """The checkpoint's network as trained (batch norm unfolded) in the plain NCHW layout: the fp32 reference path."""
    return load_checkpoint(checkpoint, device, fold=False).model.to(memory_format=torch.contiguous_format)


def build_models(args: argparse.Namespace, device: torch.device) -> tuple[RedSeg, RedSeg, str]:
    """The network as ``predict_probabilities`` runs it (batch norm folded, channels_last) and the old
    reference: the same weights as trained (batch norm unfolded) in the plain NCHW layout."""
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if args.checkpoint or (DEFAULT_CHECKPOINT.is_file() and not args.random):
        reference, source = load_checkpoint(checkpoint, device, fold=False).model, f"checkpoint {checkpoint.name}"
    else:
        torch.manual_seed(0)
        reference, source = RedSeg(RedSegConfig(width=args.width)).to(device).eval(), f"random init, width={args.width}"
    model = to_channels_last(fold_batch_norm(copy.deepcopy(reference)))
    return model, reference.to(memory_format=torch.contiguous_format), source


def openvino_engine(args: argparse.Namespace, device: torch.device):
    """The checkpoint's network on ``args.backend`` (an OpenVINO one), or None (torch only, a GPU, or random init)."""
    from model.backends import load_for_inference

    if args.backend == "torch" or device.type != "cpu" or (args.random and not args.checkpoint):
        return None
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        return None
    return load_for_inference(checkpoint, device, args.backend).model


def default_backend() -> str:
    """$REDSEG_BACKEND if set (the tests set torch), else OpenVINO int8 where it is installed."""
    if os.environ.get("REDSEG_BACKEND", "auto") not in ("", "auto"):
        return os.environ["REDSEG_BACKEND"]
    return "openvino-int8" if importlib.util.find_spec("openvino") else "torch"


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


def timed(fn, device: torch.device) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process (all threads) and peak memory of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak()
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, peak_bytes(device)


def benchmark(args: argparse.Namespace) -> None:
    from monai.inferers import sliding_window_inference

    device = resolve_device(args.device)
    model, reference, source = build_models(args, device)
    settings = TileSettings(
        tile_size=args.tile_size or TileSettings.tile_size,
        min_overlap=args.min_overlap if args.min_overlap is not None else TileSettings.min_overlap,
        batch_size=args.batch_size or TileSettings.batch_size,
        precision=args.precision,
    )
    image = read_image(args.image)
    height, width = image.shape[:2]
    working = working_scale_input(model, image)
    small_h, small_w = working.shape[2:]

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        with autocast(device, settings.precision):
            return torch.sigmoid(model(to_channels_last(batch)).fused.float())

    def whole_reference() -> None:
        with torch.inference_mode():
            torch.sigmoid(reference(working.contiguous()).fused).cpu()

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

    variants = {
        "(a) whole-image forward, fp32 NCHW": whole_reference,
        "(a') whole-image forward, fast path": whole,
        "(b) predict_probabilities, fast path": ours,
        "(c) MONAI sliding window, fast path": monai,
    }
    engine = openvino_engine(args, device)
    if engine is not None:
        def whole_engine() -> None:
            with torch.inference_mode():
                torch.sigmoid(engine(working).fused)

        variants[f"(o) whole-image forward, {args.backend}"] = whole_engine
        variants[f"(o') predict_probabilities, {args.backend}"] = lambda: predict_probabilities(engine, image, settings)
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu_times: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {name: 0 for name in variants}
    for name, fn in variants.items():
        fn()  # warm-up: allocator, kernels, lazy initialisation
    for _ in range(args.repeats):
        for name, fn in variants.items():
            seconds, cpu_seconds, peak = timed(fn, device)
            times[name].append(seconds)
            cpu_times[name].append(cpu_seconds)
            peaks[name] = max(peaks[name], peak)

    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu_times.items()}
    a, a_fast, b, c = list(medians.values())[:4]
    cpu_a, cpu_a_fast, cpu_b, cpu_c = list(cpu_medians.values())[:4]
    memory = "peak CUDA allocated" if device.type == "cuda" else "peak RSS"
    print(
        f"image {Path(args.image).name} {width}x{height} -> working {small_w}x{small_h}; {source}; "
        f"device {device} ({torch.get_num_threads()} threads); fast path "
        f"{'bf16' if uses_bf16(device, settings.precision) else 'fp32'} channels_last; tiles {settings.tile_size} "
        f"overlap {settings.min_overlap} batch {settings.batch_size}; median of {args.repeats}, interleaved"
    )
    print()
    print(f"| variant | median wall s | wall s, each run | median CPU s | {memory} MB |")
    print("|---|---:|---|---:|---:|")
    for name in variants:
        runs = ", ".join(f"{t:.3f}" for t in times[name])
        print(f"| {name} | {medians[name]:.3f} | {runs} | {cpu_medians[name]:.3f} | {peaks[name] / 2**20:.0f} |")
    print()
    print(f"wall: (b)/(a') = {b / a_fast:.3f} (target <= 1.15), (b)/(c) = {b / c:.3f} (target <= 1.0), "
          f"(b)/(a) = {b / a:.3f} (target <= 0.40)")
    print(f"CPU:  (b)/(a') = {cpu_b / cpu_a_fast:.3f}, (b)/(c) = {cpu_b / cpu_c:.3f}, (b)/(a) = {cpu_b / cpu_a:.3f}")
    if engine is not None:
        o, o_pipeline = list(medians.values())[4:]
        print(f"wall: (o)/(a') = {o / a_fast:.3f} (target <= 0.45), (o)/(a) = {o / a:.3f}, "
              f"(o')/(b) = {o_pipeline / b:.3f}, (o')/(a) = {o_pipeline / a:.3f} ({args.backend})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--checkpoint", help="default: the bundled model if present, else a random full-width network")
    parser.add_argument("--random", action="store_true", help="use a random network even if the bundled model exists")
    parser.add_argument("--width", type=float, default=1.0, help="width of the random network")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto", help="the fast path's precision")
    parser.add_argument("--backend", choices=("torch", "openvino-int8", "openvino-bf16"), default=default_backend(),
                        help="the OpenVINO engine measured beside torch, (o) and (o'); torch: none (default: "
                        "$REDSEG_BACKEND, else openvino-int8 where openvino is installed)")
    parser.add_argument("--tile-size", type=int)
    parser.add_argument("--min-overlap", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warm-heap", action="store_true",
                        help="keep freed arrays in the heap, as the server does (service.memory); each variant's peak "
                        "RSS then includes what the variants before it left there")
    args = parser.parse_args(argv)
    if args.warm_heap:
        from service.memory import configure_heap

        configure_heap()
    benchmark(args)


if __name__ == "__main__":
    main()
