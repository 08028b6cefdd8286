"""Per-image MA scores on IDRiD's 353 graded photographs: the highest MA probability against the MA lesions
counted at probability >= 0.9 (``redseg-evaluate``'s third per-image score), as ROC AUCs with 95 % bootstrap
intervals, for "any DR" (grade >= 1 against 0) and "microaneurysms only" (grade 1 against 0).

Reads the screening features ``redseg-screen`` cached for each bundled model (torch engine, bf16)::

    .venv/bin/redseg-screen --checkpoint checkpoints/redseg-default.safetensors --backend torch --out runs/screen-default
    .venv/bin/python campaign/other-cameras/per_image_scores.py
"""

import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model.checkpoint import model_digest  # noqa: E402
from training.evaluation.image_level import roc_auc  # noqa: E402
from training.referral.features import DEFAULT_CACHE  # noqa: E402

GRADES = ROOT.parent / "shared/data/idrid-grading/B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv"
SCORES = {"MA_max": "highest MA probability", "MA_count_p90": "MA lesions at p >= 0.9"}


def bootstrap_interval(scores: np.ndarray, labels: np.ndarray, rng: np.random.Generator, rounds: int = 1000) -> np.ndarray:
    draws = [rng.integers(0, len(scores), len(scores)) for _ in range(rounds)]
    return np.nanpercentile([roc_auc(scores[i], labels[i]) for i in draws], [2.5, 97.5])


def main() -> None:
    grade = {r["Image name"]: int(r["Retinopathy grade"]) for r in csv.DictReader(open(GRADES))}
    rng = np.random.default_rng(0)
    print("| model | photographs | score | ROC AUC (95 % interval) |\n|---|---|---|---|")
    for model in ("default", "fast"):
        digest = model_digest(ROOT / f"checkpoints/redseg-{model}.safetensors")[:16]
        cache = sorted((ROOT / DEFAULT_CACHE).glob(f"{digest}-features-v*-bf16-*.jsonl"))[-1]
        features = {row["image"]: row["features"] for row in map(json.loads, cache.read_text().splitlines())}
        for label, kept in (("grade >= 1 against 0", lambda g: True), ("grade 1 against 0", lambda g: g <= 1)):
            names = [n for n in features if kept(grade[n])]
            labels = np.array([grade[n] >= 1 for n in names])
            for key, text in SCORES.items():
                scores = np.array([features[n][key] for n in names])
                low, high = bootstrap_interval(scores, labels, rng)
                print(f"| {model} | {label} ({labels.sum()} of {len(names)}) | {text} | "
                      f"{roc_auc(scores, labels):.3f} ({low:.3f}-{high:.3f}) |")


if __name__ == "__main__":
    main()
