"""The fundus check's validation command, on a tiny generated folder of fundus and non-fundus images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from model.formats.images import read_image
from training.data.non_fundus_corpus import list_corpus, split_of
from training.evaluation.fundus_check import VARIANTS, main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("fundus-check")
    photograph = read_image(ROOT / "assets" / "IDRiD_05.jpg")
    photograph = cv2.resize(photograph, (1072, 712), interpolation=cv2.INTER_AREA)
    images = tmp / "shared" / "idrid" / "A. Segmentation" / "1. Original Images" / "a. Training Set"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "IDRiD_05.jpg"), photograph[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    corpus = tmp / "corpus"
    rng = np.random.default_rng(0)
    non_fundus = {
        "synthetic/flat_orange.png": np.full((300, 400, 3), (230, 120, 40), np.uint8),
        "synthetic/noise.png": rng.integers(0, 256, (300, 400, 3), dtype=np.uint8),
        "synthetic/tiny.png": np.full((8, 8, 3), 128, np.uint8),
        "documents/blank_page.png": np.full((800, 600, 3), 250, np.uint8),
    }
    import matplotlib.cbook

    portrait = read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    for index in range(4):  # names that hash to both parts
        non_fundus[f"photographs/portrait_{index}.png"] = np.ascontiguousarray(np.rot90(portrait, index))
    for name, image in non_fundus.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(corpus / name), image[..., ::-1])
    return tmp / "shared", corpus


def test_the_report_lists_acceptance_per_variant_and_refusal_per_source(folders, tmp_path, capsys):
    shared, corpus = folders
    out = tmp_path / "report"
    assert main(["--out", str(out), "--shared", str(shared), "--corpus", str(corpus), "--cache", "none"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    accepted = metrics["accepted"]["idrid-segmentation"]
    assert set(VARIANTS) <= set(accepted)
    assert accepted["all"] == {"n": len(VARIANTS), "rate": 1.0, "count": len(VARIANTS)}
    assert metrics["refused"]["synthetic"]["all"]["rate"] == 1.0
    assert metrics["refused"]["documents"]["all"]["rate"] == 1.0
    assert metrics["refused"]["photographs"]["all"]["rate"] == 1.0
    assert metrics["misclassified"] == []
    report = (out / "report.md").read_text()
    assert "idrid-segmentation" in report and "synthetic" in report and "held-out" in report
    assert (out / "scores.png").stat().st_size > 5_000
    assert "Fundus photographs accepted" in capsys.readouterr().out


def test_fitting_prints_coefficients_and_caches_features(folders, tmp_path, capsys):
    shared, corpus = folders
    cache = tmp_path / "cache"
    args = ["--shared", str(shared), "--corpus", str(corpus), "--cache", str(cache), "--fit", "--augmented", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "COEFFICIENTS" in printed and "BIAS" in printed
    assert len(list(cache.glob("features-v*.json"))) == 1


def test_the_corpus_split_is_fixed_by_name(folders):
    _, corpus = folders
    items = list_corpus(corpus)
    assert {source for source, _, _ in items} == {"synthetic", "documents", "photographs"}
    assert all(split_of(name) in ("fit", "held-out") for _, name, _ in items)
    assert split_of("synthetic/noise.png") == split_of("synthetic/noise.png")
