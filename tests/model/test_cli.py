import csv
import io
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from model import TileSettings, load_checkpoint, predict_probabilities, save_checkpoint
from model import segment_files
from model.cli import main
from model.config import ALL_LESIONS, LESIONS
from model.screening.masks import lesion_stats, probability_to_uint16, uint16_to_probability
from model.screening.summary import OEDEMA_FIELDS

from tests.model.conftest import ROOT, fundus_like, tiny_model


@pytest.fixture(autouse=True)
def synthetic_photographs_pass(monkeypatch):
    """Synthetic discs stand in for photographs in these tests; the fundus check has tests of its own
    (tests/model/test_input_check.py)."""
    real = segment_files.admit_photograph
    monkeypatch.setattr(segment_files, "admit_photograph", lambda image, config, fundus_check=True: real(image, config, False))


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "tiny.safetensors", tiny_model(seed=7), thresholds={"MA": 0.5, "HE": 0.45})


FOUR_THRESHOLDS = {"MA": 0.5, "HE": 0.45, "EX": 0.55, "SE": 0.5}


@pytest.fixture
def four_lesion_checkpoint(tmp_path):
    model = tiny_model(seed=7, ex_stages=(3, 4, 5), se_stages=(3, 4, 5))
    return save_checkpoint(tmp_path / "four.safetensors", model, thresholds=FOUR_THRESHOLDS)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for name, (height, width) in {"a.png": (120, 180), "b.jpg": (90, 61)}.items():
        path = folder / name
        cv2.imwrite(str(path), cv2.cvtColor(fundus_like(height, width, seed=len(paths)), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def read(path):
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


def outputs(stem, lesions=LESIONS):
    return [f"{stem}_{lesion}_{kind}.png" for lesion in lesions for kind in ("mask", "prob")] + [f"{stem}_overlay.png"]


def csv_lines(out):
    return (out / "screening.csv").read_text().splitlines()


def test_writes_masks_probabilities_and_overlays(tmp_path, checkpoint, images, capsys):
    out = tmp_path / "out"
    assert main([*map(str, images), "--out", str(out), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs("a") + outputs("b") + ["screening.csv"])
    rgb = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    expected = predict_probabilities(load_checkpoint(checkpoint).model, rgb, TileSettings())
    for channel, lesion in enumerate(LESIONS):
        mask, prob = read(out / f"a_{lesion}_mask.png"), read(out / f"a_{lesion}_prob.png")
        assert mask.shape == prob.shape == rgb.shape[:2]
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert prob.dtype == np.uint16
        np.testing.assert_allclose(uint16_to_probability(prob), expected[channel], atol=1e-4)
        threshold = {"MA": 0.5, "HE": 0.45}[lesion]
        np.testing.assert_array_equal(mask == 255, prob / 65535 >= threshold)  # the saved map thresholded
        np.testing.assert_array_equal(mask == 255, probability_to_uint16(expected[channel]) / 65535 >= threshold)
    assert read(out / "a_overlay.png").shape == (120, 180, 3)
    assert read(out / "b_overlay.png").shape == (90, 61, 3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for path, line in zip(images, lines):
        masks = {lesion: read(out / f"{path.stem}_{lesion}_mask.png") for lesion in LESIONS}
        stats = {lesion: lesion_stats(mask) for lesion, mask in masks.items()}
        assert "lesions, gradable" in line  # the tiny checkpoint has no score; the 61-px synthetic b is ungradable
        assert "no referral score" in line or "; ungradable (" in line and "no referral decision" in line
        assert line.startswith(f"{path}: MA {stats['MA'].area_pixels} px in {stats['MA'].components} region")
        assert f"HE {stats['HE'].area_pixels} px" in line and line.endswith(f"{out / path.stem}_*.png")


def test_a_two_lesion_models_line_and_table_are_as_before(tmp_path, checkpoint, images, capsys):
    out = tmp_path / "out"
    assert main([str(images[0]), "--out", str(out), "--checkpoint", str(checkpoint)]) == 0
    assert csv_lines(out)[0] == (
        "image,MA_count,MA_area_pixels,MA_area_fraction_fov,HE_count,HE_area_pixels,HE_area_fraction_fov,"
        "fov_area_pixels,gradable_fraction,gradable,ungradable_reasons,referral_score,operating_point,refer"
    )
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{images[0]}: MA \d+ px in \d+ regions?, HE \d+ px in \d+ regions?; "
                        rf"\d+ MA and \d+ HE lesions, gradable \d+%, no referral score -> {out / 'a'}_\*\.png", line)


def test_a_four_lesion_model_writes_every_lesions_files_line_and_columns(tmp_path, four_lesion_checkpoint, images, capsys):
    out = tmp_path / "out"
    assert main([*map(str, images), "--out", str(out), "--checkpoint", str(four_lesion_checkpoint)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs("a", ALL_LESIONS) + outputs("b", ALL_LESIONS) + ["screening.csv"])
    rgb = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    expected = predict_probabilities(load_checkpoint(four_lesion_checkpoint).model, rgb, TileSettings())
    assert len(expected) == 4
    for channel, lesion in enumerate(ALL_LESIONS):
        mask, prob = read(out / f"a_{lesion}_mask.png"), read(out / f"a_{lesion}_prob.png")
        np.testing.assert_allclose(uint16_to_probability(prob), expected[channel], atol=1e-4)
        np.testing.assert_array_equal(mask == 255, prob / 65535 >= FOUR_THRESHOLDS[lesion])
    rows = list(csv.DictReader(csv_lines(out)))
    assert [row["image"] for row in rows] == ["a.png", "b.jpg"]
    assert list(rows[0])[1:13] == [f"{lesion}_{kind}" for lesion in ALL_LESIONS
                                   for kind in ("count", "area_pixels", "area_fraction_fov")]
    assert list(rows[0])[-3:] == list(OEDEMA_FIELDS) and rows[0]["macular_oedema_risk"] == ""  # no fitted risk score
    for path, line in zip(images, capsys.readouterr().out.splitlines()):
        stats = {lesion: lesion_stats(read(out / f"{path.stem}_{lesion}_mask.png")) for lesion in ALL_LESIONS}
        assert f", EX {stats['EX'].area_pixels} px in {stats['EX'].components} region" in line
        assert f", SE {stats['SE'].area_pixels} px in {stats['SE'].components} region" in line
        assert re.search(r"; \d+ MA, \d+ HE, \d+ EX and \d+ SE lesions, gradable", line)


def test_exudate_thresholds_only_for_a_model_that_segments_them(tmp_path, checkpoint, four_lesion_checkpoint, images, capsys):
    out = tmp_path / "out"
    args = [str(images[0]), "--out", str(out), "--threshold-ex", "0", "--threshold-se", "1"]
    assert main([*args, "--checkpoint", str(four_lesion_checkpoint)]) == 0
    assert (read(out / "a_EX_mask.png") == 255).all() and (read(out / "a_SE_mask.png") == 0).all()
    other = tmp_path / "other"
    assert main([str(images[0]), "--out", str(other), "--checkpoint", str(checkpoint), "--threshold-se", "0.3"]) == 2
    assert "--threshold-se: the model does not segment SE (it segments MA, HE)" in capsys.readouterr().err
    assert not other.exists()


def test_threshold_overrides(tmp_path, checkpoint, images):
    out = tmp_path / "out"
    args = [str(images[0]), "--out", str(out), "--checkpoint", str(checkpoint)]
    args += ["--threshold-ma", "0", "--threshold-he", "1"]
    assert main(args) == 0
    assert (read(out / "a_MA_mask.png") == 255).all()
    assert (read(out / "a_HE_mask.png") == 0).all()
    with pytest.raises(SystemExit):
        main([*args, "--threshold-ma", "1.5"])


def test_bad_image_among_good_ones(tmp_path, checkpoint, images, capsys):
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(images[1].read_bytes()[:30])  # a truncated JPEG
    missing = tmp_path / "in" / "missing.png"
    out = tmp_path / "out"
    paths = [str(images[0]), str(broken), str(missing), str(images[1])]
    assert main([*paths, "--out", str(out), "--checkpoint", str(checkpoint)]) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs("a") + outputs("b") + ["screening.csv"])
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert any(str(broken) in line for line in errors)
    assert any(str(missing) in line for line in errors)
    assert any("2 of 4 images failed" in line for line in errors)
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [str(images[0]), str(images[1])]


def test_a_photograph_too_small_for_the_model_is_reported_by_name_and_the_others_go_on(tmp_path, checkpoint, images, capsys):
    tiny = tmp_path / "in" / "tiny.png"
    cv2.imwrite(str(tiny), np.full((1, 1, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert main([str(tiny), str(images[0]), "--out", str(out), "--checkpoint", str(checkpoint)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert any(line.startswith(f"redseg-segment: error: {tiny}: the photograph is too small for the model") for line in errors)
    assert sorted(p.name for p in out.iterdir()) == sorted(outputs("a") + ["screening.csv"])


def test_a_run_whose_every_image_fails_leaves_no_screening_table(tmp_path, checkpoint):
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.full((5, 5, 3), 200, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "screening.csv").write_text("image,MA_count\nold.jpg,3\n")  # an earlier run's table is not this run's
    assert main([str(tiny), "--out", str(out), "--checkpoint", str(checkpoint)]) == 1
    assert list(out.iterdir()) == []


def test_errors_go_to_a_log_as_whole_lines(tmp_path, checkpoint, images, capsys):
    """Where stderr is not a terminal there is no bar, so no error lands after a bar's carriage return."""
    missing = tmp_path / "in" / "missing.png"
    paths = [str(images[0]), str(missing), str(images[1])]
    assert main([*paths, "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [
        f"redseg-segment: error: cannot read {missing}: No such file or directory",
        "redseg-segment: error: 1 of 3 images failed",
    ]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("no_progress", [False, True])
def test_progress_bar_on_a_terminal_unless_no_progress(tmp_path, checkpoint, images, monkeypatch, capsys, no_progress):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    args = [*map(str, images), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint)]
    assert main(args + ["--no-progress"] * no_progress) == 0
    assert ("2/2" in terminal.getvalue()) is not no_progress
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_missing_checkpoint_is_a_clear_error(tmp_path, images, capsys):
    code = main([str(images[0]), "--out", str(tmp_path / "out"), "--checkpoint", str(tmp_path / "none.safetensors")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0]
    assert not (tmp_path / "out").exists()


def test_missing_default_checkpoint_says_what_to_do(tmp_path, images, capsys, monkeypatch):
    import model.checkpoint
    import model.segment_files

    missing = tmp_path / "redseg-default.safetensors"
    monkeypatch.setattr(model.checkpoint, "DEFAULT_CHECKPOINT", missing)
    monkeypatch.setattr(model.segment_files, "DEFAULT_CHECKPOINT", missing)
    code = main([str(images[0]), "--out", str(tmp_path / "out")])
    assert code == 2
    assert f"the bundled model {missing} is missing" in capsys.readouterr().err


def test_corrupt_checkpoint(tmp_path, images, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    assert main([str(images[0]), "--out", str(tmp_path / "out"), "--checkpoint", str(bad)]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err


def test_inputs_sharing_a_stem_are_refused_before_any_work(tmp_path, checkpoint, images, capsys):
    twin = tmp_path / "other" / "a.jpg"
    twin.parent.mkdir()
    twin.write_bytes(images[1].read_bytes())
    code = main([str(images[0]), str(twin), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint)])
    assert code == 2
    assert "stem a" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dicom_input_and_dicom_seg_output(tmp_path, checkpoint, images, capsys):
    import pydicom

    from tests.dicom_files import dciodvfy_errors, photograph, to_bytes

    dicom = tmp_path / "in" / "c.dcm"
    dicom.write_bytes(to_bytes(photograph(fundus_like(64, 96, seed=3), "jpeg")))
    code = main([str(dicom), str(images[0]), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                 "--dicom-seg", "binary"])
    assert code == 1  # the PNG input cannot have a SEG: reported, and the DICOM one still done
    assert "--dicom-seg needs a DICOM photograph" in capsys.readouterr().err
    assert dciodvfy_errors((tmp_path / "out" / "c_seg.dcm").read_bytes(), tmp_path) == []
    seg = pydicom.dcmread(tmp_path / "out" / "c_seg.dcm")
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    frames = seg.pixel_array  # (segments, rows, columns), MA then HE
    for index, lesion in enumerate(LESIONS):
        assert np.array_equal(frames[index] > 0, read(tmp_path / "out" / f"c_{lesion}_mask.png") > 0)


def test_tta_and_the_checkpoints_calibration_shape_the_maps(tmp_path, checkpoint, images):
    from model.calibration import Calibration, Platt
    from model.checkpoint import update_metadata

    platt = {"MA": Platt(0.5, -2.0), "HE": Platt(0.7, -1.0)}
    calibration = Calibration({"none": platt, "hflip": platt}, raw_thresholds={"MA": 0.5, "HE": 0.45})
    calibrated = update_metadata(checkpoint, tmp_path / "calibrated.safetensors", calibration=calibration.to_dict())
    out = tmp_path / "out"
    assert main([str(images[0]), "--out", str(out), "--checkpoint", str(calibrated), "--tta", "hflip"]) == 0
    rgb = cv2.cvtColor(cv2.imread(str(images[0])), cv2.COLOR_BGR2RGB)
    model = load_checkpoint(calibrated).model
    expected = predict_probabilities(model, rgb, TileSettings(tta="hflip"), calibration)
    np.testing.assert_allclose(uint16_to_probability(read(out / "a_HE_prob.png")), expected[1], atol=1e-4)
    assert not np.allclose(expected, predict_probabilities(model, rgb, TileSettings(tta="hflip")), atol=1e-2)


def test_the_command_lines_choices_are_the_models():
    """model.cli writes them out so that it parses before torch loads: they must stay the modules' own."""
    from model import cli
    from model.checkpoint import DEFAULT_CHECKPOINT, FAST_CHECKPOINT
    from model.formats.dicom_seg import SEG_TYPES
    from model.inference import TileSettings
    from model.precision import PRECISIONS
    from model.tta import TTA_MODES

    assert (cli.DEFAULT_MODEL, cli.FAST_MODEL) == (DEFAULT_CHECKPOINT.name, FAST_CHECKPOINT.name)
    assert cli.DEFAULT_TILE_SIZE == TileSettings.tile_size
    assert cli.PRECISION_CHOICES == PRECISIONS
    assert cli.TTA_CHOICES == ("auto", *sorted(TTA_MODES))
    assert cli.SEG_CHOICES == SEG_TYPES


@pytest.mark.parametrize("argv", [["--help"], ["a.jpg", "--out", "o", "--tta", "sideways"], ["a.jpg"]])
def test_help_and_argument_errors_answer_before_torch_loads(argv):
    """--help and a wrong argument answer in a fraction of a second: nothing heavy is imported for them."""
    code = ("import sys\n"
            "from model.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'cv2', 'numpy', 'pydicom', 'highdicom') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True,
                            cwd=ROOT, timeout=60)
    assert result.stdout.splitlines()[-1] == "[]"
