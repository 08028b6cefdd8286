"""Fine-tune probes against the shipped model, on the IDRiD hold-out and on DiaRetDB1-train, at full
resolution through redseg-evaluate: per lesion AP, lesion FROC (DiaRetDB1: also off every marking) and
the per-image ROC AUC of the highest probability. Raw network scores (``--raw``) for every model, since
a probe's checkpoint has no calibration yet; these measures barely depend on it.

    python campaign/joint-finetune/compare.py shipped=checkpoints/redseg-default.safetensors \
        joint=runs/joint-four-lesions/best.safetensors [--out runs/compare] > campaign/joint-finetune/compare.md
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

D = Path("../shared/data/diaretdb1-train")
SETS = {
    "idrid-holdout": ["--data", "../shared/data/idrid", "--split", "train", "--holdout"],
    "diaretdb1-train": ["--photos", str(D / "images"), "--masks", f"MA={D}/groundtruth/redsmalldots",
                        "--masks", f"HE={D}/groundtruth/hemorrhages", "--masks", f"EX={D}/groundtruth/hardexudates",
                        "--masks", f"SE={D}/groundtruth/softexudates", "--agreement", "0.75",
                        "--fov-mask", str(D / "fundus-mask.tif"), "--name", "DiaRetDB1 train"],
}


def evaluate(checkpoint: str, set_name: str, out: Path) -> dict:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        command = [sys.executable, "-m", "training.evaluation.evaluate", "--checkpoint", checkpoint, "--backend", "torch",
                   "--threads", "2", "--raw", "--no-progress", "--out", str(out), *SETS[set_name]]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(metrics.read_text())["lesions"]


def row(model: str, set_name: str, lesions: dict) -> str:
    cells = []
    for lesion in ("MA", "HE", "EX", "SE"):
        m = lesions[lesion]
        froc = m["regions"]["froc"]["mean_sensitivity"]
        off = m.get("regions_off_markings", {}).get("froc", {}).get("mean_sensitivity")
        image_auc = m["image_detection"]["roc_auc"]  # None where every photograph holds the lesion
        cells += [f"{m['average_precision']:.4f}", f"{froc:.3f}" + (f" ({off:.3f})" if off is not None else ""),
                  "-" if image_auc is None else f"{image_auc:.3f}"]
    return f"| {set_name} | {model} | " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", help="name=checkpoint")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    args = parser.parse_args()
    header = " | ".join(f"{lesion} AP | {lesion} FROC | {lesion} image AUC" for lesion in ("MA", "HE", "EX", "SE"))
    print(f"| set | model | {header} |")
    print("|---|---|" + "---|" * 12)
    for set_name in SETS:
        for name, checkpoint in (model.split("=", 1) for model in args.models):
            print(row(name, set_name, evaluate(checkpoint, set_name, args.out / f"{name}-{set_name}")), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
