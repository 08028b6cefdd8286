"""A missing data folder is one line on stderr naming IDRiD's layout and where to download it, and exit status 2,
from every command that reads IDRiD (no traceback)."""

import importlib

import pytest
import yaml

COMMANDS = {
    "redseg-train": ("training.train", "--config {config} --out {tmp}/run --no-progress"),
    "redseg-pack-data": ("training.data.pack", "--config {config} --out {tmp}/pack.npz --no-progress"),
    "redseg-evaluate": ("training.evaluation.evaluate", "--data {nowhere} --out {tmp}/out --no-progress"),
    "redseg-baseline": ("training.evaluation.baseline", "--data {nowhere} --out {tmp}/out --no-progress"),
    "redseg-calibrate": ("training.evaluation.calibrate", "--data {nowhere} --out {tmp}/out --no-progress"),
    "redseg-examples": ("training.evaluation.examples", "--data {nowhere} --images IDRiD_05 --out {tmp}/out"),
    "redseg-screen": ("training.referral.screen", "--data {nowhere} --out {tmp}/out --no-progress"),
}


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_a_missing_data_folder_is_one_line_with_the_layout_and_the_download(prog, tmp_path, capsys):
    module, arguments = COMMANDS[prog]
    nowhere = tmp_path / "nowhere"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(nowhere), "cache_dir": None},
                                      "model": {"width": 0.0625, "working_long_side": 144},
                                      "stages": [{"iterations": 1, "batch_size": 1, "crop_size": 32}]}))
    argv = arguments.format(config=config, tmp=tmp_path, nowhere=nowhere).split()
    assert importlib.import_module(module).main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    assert str(nowhere) in err and "https://idrid.grand-challenge.org/ (CC BY 4.0)" in err
    expected = "grading layout" if prog == "redseg-screen" else "A. Segmentation/1. Original Images/a. Training Set"
    assert expected in err
