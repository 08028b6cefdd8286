"""The stage probe behind the EX and SE branches' taps (issue 25): which VGG stages, and linear or hidden side convs.

Run from the repository root after one ``redseg-train-branches`` run has stored the default model's
stage outputs (``.cache/branch-features``)::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/exudates/probe_stages.py 300 100 345 2345 2345h32

Each candidate (stages, ``h`` and the hidden channels) trains EX and SE together on the 44 training
photographs (300 class-balanced BCE steps, then 100 balanced FN+FP steps, batch 16, crops of 256) and
prints the pooled-pixel AP on the 10 hold-out photographs at the working scale, inside the field of view.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.config import ALL_LESIONS
from training.branches.features import open_stored, store_key
from training.branches.fit import Branches, BranchFitConfig, fit_branches, working_scale_ap
from training.branches.run import fov_masks
from training.data.cache import WorkingScaleCache
from training.data.idrid import DEFAULT_ROOT, list_samples, split_holdout

torch.set_num_threads(2)
bce, fnfp, *wanted = sys.argv[1:]
candidates = [(tuple(int(c) for c in a.split("h")[0]), int(a.split("h")[1]) if "h" in a else 0) for a in wanted]
stages = tuple(sorted({s for c, _ in candidates for s in c}))
checkpoint = load_checkpoint("checkpoints/redseg-default.safetensors", fold=False)
folder = Path(".cache/branch-features") / store_key(checkpoint.sha256, ALL_LESIONS)
train, holdout = split_holdout(list_samples(DEFAULT_ROOT, "train", ALL_LESIONS))
train_stored = [open_stored(folder / s.name, stages).in_memory() for s in train]
holdout_stored = [open_stored(folder / s.name, stages) for s in holdout]
valid = fov_masks(WorkingScaleCache(checkpoint.config), holdout, checkpoint.model.encoder.stride)
config = BranchFitConfig(int(bce), int(fnfp))
for taps, hidden in candidates:
    start = time.time()
    branches = Branches({"EX": taps, "SE": taps}, checkpoint.config.stage_channels, hidden)
    log = fit_branches(branches, train_stored, [2, 3], config, progress=False)
    ap = working_scale_ap(branches, holdout_stored, [2, 3], valid)
    print(json.dumps({"stages": taps, "hidden": hidden, "ap": {k: round(v, 4) for k, v in ap.items()},
                      "loss_end": round(float(np.mean([r["loss"] for r in log[-50:]])), 4), "s": round(time.time() - start)}), flush=True)
