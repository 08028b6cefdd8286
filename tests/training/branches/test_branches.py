"""New branches on a frozen encoder: crops, fitting, and a merged checkpoint whose old weights are untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import RedSegConfig
from model.network import RedSeg
from training.branches.cli import main, stages_argument
from training.branches.features import StoredPhotograph
from training.branches.fit import Branches, BranchFitConfig, crop_batch, crop_origin, fit_branches, working_scale_ap
from tests.training.fake_idrid import make_fake_idrid


def test_crop_origins_are_aligned_and_inside():
    rng = np.random.default_rng(0)
    masks = np.zeros((1, 100, 130), bool)
    masks[0, 90, 120] = True
    for centred in (True, False):
        for _ in range(50):
            y, x = crop_origin(masks, 32, 16, centred, rng)
            assert y % 16 == 0 and x % 16 == 0 and 0 <= y <= 100 - 32 and 0 <= x <= 130 - 32


def test_crop_batch_takes_the_same_pixels_at_every_stage():
    height, width = 64, 96
    stage3 = np.arange(2 * 16 * 24, dtype=np.float16).reshape(2, 16, 24)  # stride 4
    stage4 = np.arange(3 * 8 * 12, dtype=np.float16).reshape(3, 8, 12)  # stride 8
    masks = np.zeros((2, height, width), bool)
    masks[1, 40:48, 56:64] = True
    photo = StoredPhotograph("p", masks, {3: stage3, 4: stage4})
    config = BranchFitConfig(crop=32, batch_size=4, lesion_share=1.0)
    taps, target = crop_batch([photo], [1], (3, 4), config, np.random.default_rng(1))
    assert taps[0] is None and taps[1] is None and taps[4] is None
    assert taps[2].shape == (4, 2, 8, 8) and taps[3].shape == (4, 3, 4, 4) and target.shape == (4, 1, 32, 32)
    for crop3, crop4, truth in zip(taps[2], taps[3], target):
        y, x = np.argwhere(stage3[0] == float(crop3[0, 0, 0]))[0] * 4
        assert np.array_equal(crop4.numpy(), stage4[:, y // 8 : y // 8 + 4, x // 8 : x // 8 + 4])
        assert np.array_equal(truth[0].numpy() > 0, masks[1, y : y + 32, x : x + 32])


def separable_photographs(count: int, rng: np.random.Generator) -> list[StoredPhotograph]:
    """Stage-3 features whose first channel marks the lesion: a branch can learn it exactly."""
    photos = []
    for index in range(count):
        masks = np.zeros((1, 64, 64), bool)
        y, x = rng.integers(0, 12, size=2) * 4
        masks[0, y : y + 8, x : x + 8] = True
        stage3 = rng.normal(0, 1, (4, 16, 16)).astype(np.float16)
        stage3[0] = np.where(masks[0, ::4, ::4], 3.0, -3.0)
        photos.append(StoredPhotograph(f"p{index}", masks, {3: stage3}))
    return photos


def test_fitting_learns_a_separable_lesion():
    rng = np.random.default_rng(0)
    branches = Branches({"EX": (3,)}, (1, 2, 4, 8, 8))
    with torch.no_grad():  # start from a branch that has it backwards
        branches.branches["EX"].side_convs[0].weight.fill_(0.0)[:, 0] = -1.0
    before = working_scale_ap(branches, separable_photographs(3, np.random.default_rng(9)), [0])["EX"]
    log = fit_branches(branches, separable_photographs(6, rng), [0], BranchFitConfig(60, 20, crop=32, batch_size=4,
                       learning_rate=0.05), progress=False)
    after = working_scale_ap(branches, separable_photographs(3, np.random.default_rng(9)), [0])["EX"]
    assert np.mean([r["loss"] for r in log[:10]]) > np.mean([r["loss"] for r in log[50:60]])
    assert after > 0.9 > before


@pytest.mark.parametrize("text, expected", [("EX=3,4,5", ("EX", (3, 4, 5))), ("SE=2", ("SE", (2,)))])
def test_stages_argument(text, expected):
    assert stages_argument(text) == expected


@pytest.mark.parametrize("text", ["MA=2,3", "EX=", "EX=a", "EX"])
def test_stages_argument_refuses(text):
    with pytest.raises(Exception, match="LESION=STAGES|numbers"):
        stages_argument(text)


def test_cli_adds_branches_and_keeps_every_other_weight(tmp_path):
    names = ("IDRiD_01", "IDRiD_02", "IDRiD_03")
    data = make_fake_idrid(tmp_path / "idrid", names=names, size=(96, 128), with_he=("IDRiD_01", "IDRiD_03"), exudates=True)
    torch.manual_seed(0)
    source = save_checkpoint(tmp_path / "red.safetensors", RedSeg(RedSegConfig(width=0.0625, working_long_side=128)),
                             thresholds={"MA": 0.3, "HE": 0.7}, referral={"fitted": "on red lesions"})
    written = tmp_path / "four.safetensors"
    code = main(["--checkpoint", str(source), "--write", str(written), "--data", str(data), "--holdout", "IDRiD_03",
                 "--store", str(tmp_path / "store"), "--out", str(tmp_path / "run"), "--bce-iterations", "3",
                 "--fnfp-iterations", "2", "--batch-size", "2", "--stages", "EX=3,4", "SE=4", "--no-progress"])
    assert code == 0
    four = load_checkpoint(written, fold=False)
    assert four.config.lesions == ("MA", "HE", "EX", "SE") and four.config.ex_stages == (3, 4)
    assert four.thresholds == {"MA": 0.3, "HE": 0.7, "EX": 0.5, "SE": 0.5}
    assert four.referral == {"fitted": "on red lesions"}
    with safe_open(str(source), "pt") as old, safe_open(str(written), "pt") as new:
        assert set(new.keys()) - set(old.keys()) and all(k.startswith(("branches.EX.", "branches.SE.")) for k in set(new.keys()) - set(old.keys()))
        assert all(torch.equal(old.get_tensor(k), new.get_tensor(k)) for k in old.keys())
    assert (tmp_path / "run" / "curves.png").is_file() and (tmp_path / "run" / "metrics.json").is_file()


def test_cli_refuses_a_checkpoint_that_has_the_branches(tmp_path, capsys):
    data = make_fake_idrid(tmp_path / "idrid", names=("IDRiD_01", "IDRiD_02"), exudates=True)
    source = save_checkpoint(tmp_path / "four.safetensors", RedSeg(RedSegConfig(width=0.0625, working_long_side=128, ex_stages=(3,))))
    code = main(["--checkpoint", str(source), "--write", str(tmp_path / "x.safetensors"), "--data", str(data),
                 "--holdout", "IDRiD_02", "--store", str(tmp_path / "store"), "--stages", "EX=3", "--no-progress",
                 "--bce-iterations", "1", "--fnfp-iterations", "0", "--batch-size", "1"])
    assert code == 2 and "already has branches for ['EX']" in capsys.readouterr().err
