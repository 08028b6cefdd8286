"""``redseg-train-branches``: add lesion branches (hard and soft exudates) to a trained checkpoint, its encoder frozen.

The encoder's stage outputs are computed once per IDRiD training photograph and stored (under
``--store``, reused by later runs with the same checkpoint), the branches are trained on the
training split (the hold-out left out), their pooled-pixel AP at the working scale is measured on
the hold-out, and the checkpoint is written to ``--write`` with the branches added and every other
weight unchanged. The new lesions' thresholds are provisional until ``redseg-calibrate --lesions``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from model.cli_help import plain_help
from model.config import EXUDATES
from training.data.idrid import DEFAULT_HOLDOUT

DEFAULT_STORE = Path(".cache/branch-features")


def stages_argument(text: str) -> tuple[str, tuple[int, ...]]:
    lesion, _, stages = text.partition("=")
    if lesion not in EXUDATES or not stages:
        raise argparse.ArgumentTypeError(f"expected LESION=STAGES such as EX=3,4,5 with LESION one of {EXUDATES}, got {text!r}")
    try:
        return lesion, tuple(int(s) for s in stages.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"stages must be numbers 1..5 separated by commas, got {stages!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redseg-train-branches", description=plain_help(__doc__.split("\n\n")[0]))
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH", help="the trained checkpoint to add branches to")
    parser.add_argument("--write", type=Path, required=True, metavar="PATH", help="the checkpoint to write")
    parser.add_argument("--stages", type=stages_argument, nargs="+", default=[("EX", (2, 3, 4, 5)), ("SE", (2, 3, 4, 5))],
                        metavar="LESION=STAGES", help="the branches to add and the VGG stages each taps (default EX=2,3,4,5 SE=2,3,4,5)")
    parser.add_argument("--hidden", type=int, default=32, metavar="N",
                        help="hidden channels of the side convs (1x1, ReLU, 1x1); 0: one 1x1 conv as MA's and HE's (default 32)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR", help="IDRiD's folder (default: beside the project)")
    parser.add_argument("--holdout", type=lambda text: tuple(n.strip() for n in text.split(",") if n.strip()),
                        default=DEFAULT_HOLDOUT, metavar="NAMES", help="photographs left out of training and measured "
                        f"(default: IDRiD's usual hold-out, {DEFAULT_HOLDOUT[0]}..{DEFAULT_HOLDOUT[-1]}, every 5th)")
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, metavar="DIR", help=f"where stage outputs are stored (default {DEFAULT_STORE})")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="folder for log.jsonl, metrics.json and curves.png")
    parser.add_argument("--bce-iterations", type=int, default=900, help="class-balanced BCE steps (default 900)")
    parser.add_argument("--fnfp-iterations", type=int, default=300, help="balanced FN+FP steps after them (default 300)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from training.branches.run import RunError, train_branches

    try:
        report = train_branches(args)
    except RunError as exc:
        print(f"redseg-train-branches: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report["holdout_working_scale_ap"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
