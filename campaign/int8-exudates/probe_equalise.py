"""Probe (issue 21): can the encoder's `features.24`, the one conv recipe 5 kept in floating point for the hard
exudates' AP, be quantised once stage 3's output channels are equalised (``model.channel_equalisation``)?
Quantises a copy of a checkpoint with every encoder conv but the first in int8 and stage 3 equalised with
strength ``alpha`` (0: not equalised; 1: what ``redseg-openvino-6`` ships), then runs redseg-evaluate on the
copy through int8 (the hold-out, all four lesions):

    .venv/bin/python campaign/int8-exudates/probe_equalise.py runs/int8-equalise-0.5 0.5 [--checkpoint PATH]
"""

import sys
from pathlib import Path

import model.channel_equalisation as equalisation
import model.openvino_export as export
from int8_holdout import copy_into, int8_holdout
from model.checkpoint import DEFAULT_CHECKPOINT


def main(out: Path, alpha: float, checkpoint_path: Path) -> int:
    checkpoint = copy_into(out, checkpoint_path)
    equalise = equalisation.equalise_stage_output
    export.equalise_stage_output = lambda model, inputs, stage: equalise(model, inputs, stage, alpha)
    export.RECIPE += f"-equalise-{alpha}"
    print(f"kept in fp32: {export.IGNORED_PATTERNS}; stages {export.EQUALISED_STAGES} equalised, alpha {alpha}", flush=True)
    return int8_holdout(out, checkpoint)


if __name__ == "__main__":
    args = sys.argv[1:]
    path = Path(args[args.index("--checkpoint") + 1]) if "--checkpoint" in args else DEFAULT_CHECKPOINT
    sys.exit(main(Path(args[0]), float(args[1]), path))
