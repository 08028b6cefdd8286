"""``python -m training.evaluation.gradability``: the ungradable rule (``model.screening.quality``) on real
photographs and on degraded copies of them, with its confusion.

Real photographs are judged at full resolution, as served. The degraded copies are made from a copy
1072 pixels wide (IDRiD's JPEGs decoded at a quarter; DiaRetDB1's 1500-pixel PNGs shrunk), the blur's
sigma given in pixels of that copy: severe degradations should be ungradable, mild ones gradable, and
the borderline ones are reported without a verdict.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from model.formats.images import read_image
from model.screening.quality import assess_quality
from training.data.idrid import DEFAULT_ROOT as IDRID_ROOT
from training.referral.grading import DEFAULT_ROOT as GRADING_ROOT

COPY_WIDTH = 1072


def _exposed(gain: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _blurred(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: cv2.GaussianBlur(image, (0, 0), sigma)


def _jpeg(quality: int) -> Callable[[np.ndarray], np.ndarray]:
    def degrade(image: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    return degrade


DEGRADATIONS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "copy": ("gradable", lambda image: image),
    "blur 1 px": ("gradable", _blurred(1)),
    "blur 2 px": ("borderline", _blurred(2)),
    "blur 4 px": ("borderline", _blurred(4)),
    "blur 8 px": ("ungradable", _blurred(8)),
    "blur 16 px": ("ungradable", _blurred(16)),
    "exposure x0.5": ("gradable", _exposed(0.5)),
    "exposure x0.25": ("borderline", _exposed(0.25)),
    "exposure x0.1": ("ungradable", _exposed(0.1)),
    "exposure x1.25": ("gradable", _exposed(1.25)),
    "exposure x1.5": ("borderline", _exposed(1.5)),
    "exposure x2.5": ("borderline", _exposed(2.5)),
    "exposure x4": ("ungradable", _exposed(4)),
    "JPEG quality 10": ("gradable", _jpeg(10)),
    "JPEG quality 3": ("borderline", _jpeg(3)),
}
"""Name: (expected answer, degradation of the 1072-pixel copy)."""


def photographs(idrid: Path, grading: Path, diaretdb1: Path | None) -> Iterator[tuple[str, Path]]:
    yield from (("IDRiD segmentation", p) for p in sorted((idrid / "A. Segmentation/1. Original Images").glob("*/*.jpg")))
    yield from (("IDRiD grading", p) for p in sorted((grading / "B. Disease Grading/1. Original Images").glob("*/*.jpg")))
    if diaretdb1 is not None:
        yield from (("DiaRetDB1 train", p) for p in sorted((diaretdb1 / "images").glob("*.png")))


def judge(image: np.ndarray) -> dict:
    quality = assess_quality(image)
    return {"gradable": quality.gradable, "reasons": list(quality.reasons), "focus": quality.focus,
            "brightness": quality.brightness, "saturated_share": quality.saturated_share, "usable_share": quality.usable_share}


def evaluate(sources: list[tuple[str, Path]], progress: bool = True) -> list[dict]:
    rows = []
    for source, path in tqdm(sources, desc="gradability", unit="photo", disable=not progress):
        image = read_image(path)
        rows.append({"source": source, "file": path.name, "variant": "real", "expected": "gradable", **judge(image)})
        scale = COPY_WIDTH / image.shape[1]
        copy = cv2.resize(image, (COPY_WIDTH, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        for name, (expected, degrade) in DEGRADATIONS.items():
            rows.append({"source": source, "file": path.name, "variant": name, "expected": expected, **judge(degrade(copy))})
    return rows


def summarise_rows(rows: list[dict]) -> dict:
    variants = {}
    for variant in ["real", *DEGRADATIONS]:
        chosen = [r for r in rows if r["variant"] == variant]
        variants[variant] = {"expected": chosen[0]["expected"], "photographs": len(chosen),
                             "ungradable": sum(not r["gradable"] for r in chosen)} if chosen else {}
    judged = [r for r in rows if r["expected"] != "borderline"]
    confusion = {f"expected {e}": {f"answered {a}": sum(r["expected"] == e and r["gradable"] == (a == "gradable") for r in judged)
                                   for a in ("gradable", "ungradable")} for e in ("gradable", "ungradable")}
    refused_real = [f"{r['source']}/{r['file']}: {', '.join(r['reasons'])}" for r in rows if r["variant"] == "real" and not r["gradable"]]
    return {"variants": variants, "confusion": confusion, "real_photographs_answered_ungradable": refused_real}


def report(summary: dict) -> str:
    lines = ["| variant | expected | photographs | answered ungradable |", "|---|---|---|---|"]
    for variant, v in summary["variants"].items():
        if v:
            lines.append(f"| {variant} | {v['expected']} | {v['photographs']} | {v['ungradable']} ({v['ungradable'] / v['photographs']:.1%}) |")
    lines += ["", "| | answered gradable | answered ungradable |", "|---|---|---|"]
    for expected, answers in summary["confusion"].items():
        lines.append(f"| {expected} | {answers['answered gradable']} | {answers['answered ungradable']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.gradability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--idrid", type=Path, default=IDRID_ROOT)
    parser.add_argument("--grading", type=Path, default=GRADING_ROOT)
    parser.add_argument("--diaretdb1", type=Path, default=IDRID_ROOT.parent / "diaretdb1-train")
    parser.add_argument("--every", type=int, default=1, help="judge every n-th photograph of each set")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    sources = list(photographs(args.idrid, args.grading, args.diaretdb1 if args.diaretdb1.is_dir() else None))[:: args.every]
    if not sources:
        parser.error(f"no photographs under {args.idrid} or {args.grading}")
    rows = evaluate(sources, progress=not args.no_progress)
    summary = summarise_rows(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "report.md").write_text(report(summary))
    print(report(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
