"""What test-time augmentation costs: ``predict_probabilities`` per mode against a plain fp32 forward.

    .venv/bin/python bench/tta.py [--checkpoint PATH] [--image assets/IDRiD_05.jpg] [--repeats 3]

On one image, interleaved, medians: (a) the budget, one whole-image forward at the working scale in
fp32 with the NCHW layout; then ``predict_probabilities`` end to end (fast path, calibration of the
checkpoint if it has one) for each TTA mode. The ratio to (a) is what a /segment request's inference
costs in units of the budget (decoding and PNG encoding come on top).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inference import nchw_reference, working_scale_input  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.formats.images import read_image  # noqa: E402
from model.inference import TileSettings, predict_probabilities  # noqa: E402
from model.tta import TTA_MODES  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--image", type=Path, default=ROOT / "assets" / "IDRiD_05.jpg")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(TTA_MODES))
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    image = read_image(args.image)
    reference = nchw_reference(args.checkpoint, torch.device("cpu"))
    tensor = working_scale_input(checkpoint.model, image)

    def budget() -> None:
        with torch.inference_mode():
            reference(tensor)

    def mode_run(mode: str):
        settings = TileSettings(tta=mode)
        return lambda: predict_probabilities(checkpoint.model, image, settings, checkpoint.calibration)

    variants = {"(a) whole-image forward, fp32 NCHW": budget}
    variants |= {f"predict_probabilities, tta {mode}": mode_run(mode) for mode in args.modes.split(",")}
    for run in variants.values():
        run()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    floor = statistics.median(seconds["(a) whole-image forward, fp32 NCHW"])
    print(f"{args.checkpoint.name} on {args.image.name} (working {tensor.shape[3]}x{tensor.shape[2]}), "
          f"{torch.get_num_threads()} torch threads, medians of {args.repeats}")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"{name:45} {median:7.2f} s   {median / floor:5.2f} x (a)")


if __name__ == "__main__":
    main()
