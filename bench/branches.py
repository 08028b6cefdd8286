"""What the exudate branches cost: a four-lesion network against the same network without EX and SE.

    .venv/bin/python bench/branches.py [--checkpoint checkpoints/redseg-default.safetensors] [--repeats 5]

The two-lesion network is the four-lesion checkpoint with its EX and SE branches dropped: the same
encoder and red-lesion weights. Measured in one run, interleaved, medians on the torch fast path
(batch norm folded, channels_last, bf16 autocast where native): the whole-image forward at the
working scale, and ``predict_probabilities`` end to end on a full-size photograph. Ratios over 1
are what the two extra branches cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inference import working_scale_input  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint  # noqa: E402
from model.formats.images import read_image  # noqa: E402
from model.inference import TileSettings, predict_probabilities  # noqa: E402
from model.network import RedSeg, fold_batch_norm  # noqa: E402
from model.precision import autocast, to_channels_last  # noqa: E402


def without_exudates(model: RedSeg) -> RedSeg:
    """The same network (batch norm not yet folded) without its EX and SE branches."""
    red = RedSeg(replace(model.config, ex_stages=(), se_stages=(), exudate_hidden=0))
    red.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("branches.EX.", "branches.SE."))})
    return red.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="a four-lesion checkpoint")
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    four = load_checkpoint(args.checkpoint, fold=False).model
    if "EX" not in four.config.lesions:
        parser.error(f"{args.checkpoint} has no exudate branches")
    models = {name: to_channels_last(fold_batch_norm(m)) for name, m in (("MA, HE", without_exudates(four)), ("MA, HE, EX, SE", four))}
    image = read_image(args.image)
    tensor = to_channels_last(working_scale_input(four, image))
    device = tensor.device
    runs = {"forward": lambda m: m(tensor), "predict_probabilities": lambda m: predict_probabilities(m, image, TileSettings())}
    times = {(run, name): [] for run in runs for name in models}
    with torch.inference_mode(), autocast(device):
        for run, call in runs.items():
            for model in models.values():
                call(model)  # warm-up
            for _ in range(args.repeats):
                for name, model in models.items():
                    start = time.perf_counter()
                    call(model)
                    times[run, name].append(time.perf_counter() - start)
    print(f"{args.checkpoint.name}, {Path(args.image).name}, {torch.get_num_threads()} threads, medians of {args.repeats}")
    for run in runs:
        red, all_four = (statistics.median(times[run, name]) for name in models)
        print(f"{run:22} MA, HE {red:.3f} s   MA, HE, EX, SE {all_four:.3f} s   ratio {all_four / red:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
