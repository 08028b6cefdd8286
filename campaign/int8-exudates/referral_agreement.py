"""The shipped referral and macular-oedema scores (fitted on torch features) applied to the features the int8
engine gives: how many of the 353 graded photographs change their decision. Needs both feature caches
(``redseg-screen`` with ``--backend torch`` and with ``--backend openvino-int8``; torch's bf16 features where
this CPU made them, else its fp32 ones):

    .venv/bin/python campaign/int8-exudates/referral_agreement.py checkpoints/redseg-default.safetensors
"""

import sys
from pathlib import Path

import numpy as np

from model.checkpoint import load_checkpoint, model_digest
from model.screening.referral import ReferralScore
from training.referral.features import DEFAULT_CACHE, read_cache

checkpoint = load_checkpoint(sys.argv[1])
files = sorted(Path(DEFAULT_CACHE).glob(f"{model_digest(sys.argv[1])[:16]}-features-*.jsonl"))
torch_file = min((f for f in files if "-openvino-" not in f.name), key=lambda f: "-bf16-" not in f.name)  # bf16 first
torch_rows = read_cache(torch_file)
print(f"torch features: {torch_file.name}")
int8_rows = read_cache(max((f for f in files if "-openvino-int8-" in f.name), key=lambda f: f.stat().st_mtime))  # the newest IR's
names = sorted(set(torch_rows) & set(int8_rows))
for label, stored in (("referral", checkpoint.referral), ("macular oedema", checkpoint.macular_oedema)):
    score = ReferralScore.from_dict(stored)
    a = score.scores([torch_rows[n] for n in names])
    b = score.scores([int8_rows[n] for n in names])
    flips = int(np.sum((a >= score.operating_point) != (b >= score.operating_point)))
    print(f"{label}: {len(names)} photographs, scores differ by {np.abs(a - b).mean():.4f} on average "
          f"({np.abs(a - b).max():.4f} at most); decisions that change at {score.operating_point:.3f}: {flips}")
