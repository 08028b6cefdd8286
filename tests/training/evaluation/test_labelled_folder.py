"""redseg-evaluate on any labelled set: a folder of photographs and per lesion a folder of masks by file stem."""

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from model.checkpoint import save_checkpoint
from model.config import RedSegConfig
from model.network import RedSeg
from training.data.idrid import DatasetLayoutError
from training.evaluation.evaluate import evaluate_samples, main
from training.evaluation.labelled_folder import MaskReading, list_folder_samples, parse_lesion_folder, read_lesion_mask

SIZE = (96, 128)


def write_set(root, names=("im01", "im02", "im03")):
    """DiaRetDB1-like: PNG photographs, soft maps (value / 252 = agreement) under gt/ma and gt/he
    (im03 has no HE map), one field-of-view mask. Per photograph the MA map holds a dot at agreement
    1 and one at 0.75 (both lesion at 0.75), one at 0.667 (not lesion); im02's MA dots are all under 0.75."""
    height, width = SIZE
    for sub in ("photos/a", "photos/b", "gt/ma", "gt/he"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:height, :width]
    fov = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (0.48 * height) ** 2).astype(np.uint8) * 255
    cv2.imwrite(str(root / "fov.png"), fov)
    for i, name in enumerate(names):
        bgr = np.zeros((height, width, 3), np.uint8)
        bgr[fov > 0] = (20, 70, 160)
        ma = np.zeros((height, width), np.uint8)
        values = (252, 189, 168) if name != "im02" else (168, 147, 63)
        for value, x in zip(values, (40, 60, 80)):
            cv2.circle(ma, (x, 40), 2, int(value), -1)
        cv2.imwrite(str(root / "photos" / ("a" if i % 2 == 0 else "b") / f"{name}.png"), bgr)
        cv2.imwrite(str(root / "gt/ma" / f"{name}.png"), ma)
        if name != "im03":
            he = np.zeros((height, width), np.uint8)
            cv2.circle(he, (64, 64), 8, 252, -1)
            cv2.imwrite(str(root / "gt/he" / f"{name}.png"), he)
    return root


@pytest.fixture
def labelled(tmp_path):
    return write_set(tmp_path / "set")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=128)).eval()
    return save_checkpoint(tmp_path / "tiny.safetensors", model, thresholds={"MA": 0.4, "HE": 0.6}, name="tiny")


def soft_samples(root, **kwargs):
    return list_folder_samples([root / "photos"], {"MA": root / "gt/ma", "HE": root / "gt/he"}, MaskReading(0.75),
                               root / "fov.png", **kwargs)


def test_soft_maps_are_read_at_the_agreement(tmp_path):
    path = tmp_path / "soft.png"
    cv2.imwrite(str(path), np.array([[0, 21, 168, 189, 252]], np.uint8))
    assert read_lesion_mask(path, (1, 5), MaskReading(0.75)).tolist() == [[False, False, False, True, True]]
    assert read_lesion_mask(path, (1, 5), MaskReading(0.5)).tolist() == [[False, False, True, True, True]]
    assert read_lesion_mask(path, (1, 5), MaskReading()).tolist() == [[False, True, True, True, True]]
    assert not read_lesion_mask(None, (1, 5), MaskReading()).any()
    with pytest.raises(DatasetLayoutError, match="5x1 but its photograph is 4x1"):
        read_lesion_mask(path, (1, 4), MaskReading())


def test_photographs_are_found_recursively_and_matched_by_stem(labelled):
    samples = soft_samples(labelled)
    assert [s.name for s in samples] == ["im01", "im02", "im03"]
    assert samples[2].mask_paths == {"MA": labelled / "gt/ma/im03.png", "HE": None}
    loaded = samples[0].load()
    assert set(loaded.truth) == {"MA", "HE"} and loaded.valid.shape == SIZE
    # Two dots reach 0.75 (252 and 189), the 168 one does not.
    assert cv2.connectedComponents(loaded.truth["MA"].astype(np.uint8))[0] - 1 == 2
    assert [s.name for s in soft_samples(labelled, names=["im03", "im01"])] == ["im01", "im03"]


def test_layout_errors_are_clear(labelled):
    (labelled / "photos/b/im01.jpg").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match="two files named im01"):
        soft_samples(labelled)
    (labelled / "photos/b/im01.jpg").unlink()
    (labelled / "other").mkdir()
    cv2.imwrite(str(labelled / "other/image001.png"), np.zeros(SIZE, np.uint8))
    with pytest.raises(DatasetLayoutError, match="no HE mask under .* is named as a photograph"):
        list_folder_samples([labelled / "photos"], {"HE": labelled / "other"})
    with pytest.raises(ValueError, match="not in the data"):
        soft_samples(labelled, names=["im09"])
    (labelled / "empty").mkdir()
    with pytest.raises(DatasetLayoutError, match="no photographs"):
        list_folder_samples([labelled / "empty"], {"MA": labelled / "gt/ma"})
    with pytest.raises(ValueError, match="LESION=FOLDER"):
        parse_lesion_folder("OD=dir")


def test_an_oracle_finds_every_region_and_ranks_every_photograph(labelled):
    samples = soft_samples(labelled)
    truths = {s.name: s.load().truth for s in samples}
    names = iter([s.name for s in samples])

    def oracle(image):
        truth = truths[next(names)]
        return np.stack([np.where(truth[lesion], 0.9, 0.0) for lesion in ("MA", "HE")]).astype(np.float32)

    result = evaluate_samples(samples, oracle, {"MA": 0.5, "HE": 0.5}, progress=False)
    assert result.regions["MA"].num_regions == 4 and result.regions["HE"].num_regions == 2
    assert result.regions["MA"].sensitivity_at().tolist() == [1.0] * 7
    assert result.pooled["MA"].average_precision() == pytest.approx(1.0)
    rows = {row["image"]: row for row in result.per_image}
    assert [rows[n]["MA"]["holds_lesion"] for n in ("im01", "im02", "im03")] == [True, False, True]
    assert rows["im02"]["MA"]["served_regions"] == 0 and rows["im01"]["MA"]["found_regions"] == 2
    # The oracle's 0.9 reaches the p >= 0.9 count, where each haemorrhage is one lesion; the 5-pixel MA
    # dots are too large to count as microaneurysms in a field of view 92 pixels across (0.009 of it is 0.8 pixel).
    assert [rows[n]["HE"]["lesions_p90"] for n in ("im01", "im02", "im03")] == [1, 1, 0]
    assert [rows[n]["MA"]["lesions_p90"] for n in ("im01", "im02", "im03")] == [0, 0, 0]
    # Only the field of view's pixels are scored.
    assert result.pooled["MA"].num_pixels == 3 * int((cv2.imread(str(labelled / "fov.png"), 0) > 0).sum())


def test_cli_on_a_labelled_folder(tmp_path, labelled, checkpoint, capsys):
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(checkpoint), "--photos", str(labelled / "photos"), "--masks", f"MA={labelled / 'gt/ma'}",
                 "--masks", f"HE={labelled / 'gt/he'}", "--agreement", "--fov-mask", str(labelled / "fov.png"),
                 "--threads", "1", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"]["layout"] == "labelled folder" and report["data"]["agreement"] == 0.75
    assert report["data"]["images"] == ["im01", "im02", "im03"] and report["data"]["name"] == "set/photos"
    for lesion, regions, holding in (("MA", 4, 2), ("HE", 2, 2)):
        figures = report["lesions"][lesion]
        assert figures["regions"]["ground_truth_regions"] == regions and figures["regions"]["images"] == 3
        assert len(figures["regions"]["froc"]["sensitivity"]) == 7
        assert figures["regions"]["at_threshold"]["threshold"] == report["model"]["thresholds"][lesion]
        assert figures["image_detection"]["images_with_lesion"] == holding
        assert "highest probability" in figures["image_detection"]["score"]
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 6 and {"false_regions", "max_probability", "holds_lesion"} <= set(rows[0])
    assert (out / "froc.png").stat().st_size > 10_000 and (out / "pr_curves.png").exists()
    assert "FROC" in capsys.readouterr().out


def test_cli_with_one_lesion_reports_that_lesion_only(tmp_path, labelled, checkpoint):
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(checkpoint), "--photos", str(labelled / "photos/a"), "--masks", f"ma={labelled / 'gt/ma'}",
                 "--images", "im01", "--name", "tiny set", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert list(report["lesions"]) == ["MA"] and report["data"]["name"] == "tiny set"
    # Binary reading: all three dots are lesion.
    assert report["lesions"]["MA"]["regions"]["ground_truth_regions"] == 3
    assert [r["lesion"] for r in csv.DictReader(open(out / "per_image.csv"))] == ["MA"]


@pytest.mark.parametrize("extra, message", [
    (["--photos", "{set}/photos"], "needs at least one --masks"),
    (["--masks", "MA={set}/gt/ma"], "--masks needs --photos"),
    (["--photos", "{set}/photos", "--masks", "MA={set}/gt/ma", "--holdout"], "--holdout is IDRiD's"),
    (["--photos", "{set}/photos", "--masks", "MA={set}/gt/ma", "--agreement", "1.5"], "--agreement must be"),
    (["--photos", "{set}/photos", "--masks", "MA={set}/gt/ma", "--fov-mask", "{set}/nope.png"], "nope.png not found"),
    (["--photos", "{set}/photos", "--masks", "MA={set}/gt/ma", "--threads", "0"], "--threads must be"),
])
def test_cli_errors_are_clear(tmp_path, labelled, checkpoint, capsys, extra, message):
    extra = [part.format(set=labelled) for part in extra]
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_with_soft_maps_a_region_on_a_weaker_marking_is_false_only_in_the_strict_count(labelled):
    samples = soft_samples(labelled)
    names = iter([s.name for s in samples])

    def every_marking(image):
        """Fires on every MA dot any grader marked (agreement > 0) and on nothing else."""
        name = next(names)
        ma = cv2.imread(str(labelled / "gt/ma" / f"{name}.png"), cv2.IMREAD_UNCHANGED) > 0
        return np.stack([np.where(ma, 0.9, 0.0), np.zeros(SIZE)]).astype(np.float32)

    result = evaluate_samples(samples, every_marking, {"MA": 0.5, "HE": 0.5}, progress=False)
    # Dots under 0.75: one in im01 and im03, three in im02; all found regions are found in both counts.
    strict, lenient = result.regions["MA"], result.regions_off_markings["MA"]
    assert strict.point(strict.operating_index())["false_regions"] == 5
    assert lenient.point(lenient.operating_index())["false_regions"] == 0
    assert strict.curve()[1].tolist() == lenient.curve()[1].tolist()
    assert [row["MA"]["false_regions_off_markings"] for row in result.per_image] == [0, 0, 0]
