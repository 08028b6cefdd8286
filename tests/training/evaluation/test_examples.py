import numpy as np

from model import RedSeg, RedSegConfig, save_checkpoint
from training.evaluation.examples import densest_window, main

from tests.training.fake_idrid import make_fake_idrid


def test_densest_window_finds_the_lesions():
    masks = np.zeros((2, 400, 600), bool)
    masks[1, 300:340, 500:540] = True
    y, x = densest_window(masks, 80)
    assert y <= 300 and y + 80 >= 340 and x <= 500 and x + 80 >= 540


def test_cli_writes_one_figure_per_image_and_refuses_unknown_names(tmp_path, capsys):
    data = make_fake_idrid(tmp_path / "idrid")
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", RedSeg(RedSegConfig(width=0.0625, working_long_side=64)))
    assert main(["--checkpoint", str(checkpoint), "--data", str(data), "--images", "IDRiD_01", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "IDRiD_01_example.png").stat().st_size > 10_000
    assert main(["--checkpoint", str(checkpoint), "--data", str(data), "--images", "IDRiD_09", "--out", str(tmp_path / "out")]) == 2
    assert "IDRiD_09" in capsys.readouterr().err
