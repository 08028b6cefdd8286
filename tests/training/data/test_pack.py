"""redseg-pack-data: the working-scale data in one file, and the trainer reading it instead of the IDRiD folder."""

import numpy as np
import pytest

from model.config import RedSegConfig
from training.data.cache import WorkingScaleCache
from training.data.idrid import list_samples
from training.data.pack import PackError, main as pack_main, read_pack
from training.train import main as train_main

from tests.training.test_trainer import NAMES, _config, _records, _variant


def _pack(tmp_path, quality=95):
    config = _config(tmp_path)
    out = tmp_path / "pack.npz"
    assert pack_main(["--config", str(config), "--out", str(out), "--quality", str(quality), "--no-progress"]) == 0
    return config, out


def _model_config(config_path) -> RedSegConfig:
    from training.config import load_config

    return load_config(config_path).model


def test_a_pack_holds_the_cached_samples_masks_exactly_and_images_nearly(tmp_path):
    config, out = _pack(tmp_path)
    model_config = _model_config(config)
    packed = read_pack(out, model_config)
    cached = WorkingScaleCache(model_config, None).get_all(list_samples(tmp_path / "idrid"))
    assert [s.name for s in packed] == list(NAMES)
    for mine, theirs in zip(packed, cached):
        assert mine.image.shape == theirs.image.shape and mine.image.dtype == np.uint8
        assert np.array_equal(mine.masks, theirs.masks)
        error = np.abs(mine.image.astype(int) - theirs.image.astype(int))
        assert error.mean() < 2.0  # JPEG at quality 95, 4:4:4


def test_a_pack_made_for_another_scale_is_refused(tmp_path):
    config, out = _pack(tmp_path)
    other = RedSegConfig(**{**_model_config(config).to_dict(), "working_long_side": 288})
    with pytest.raises(PackError, match="scale"):
        read_pack(out, other)
    with pytest.raises(PackError, match="not found"):
        read_pack(tmp_path / "absent.npz", other)


def test_the_trainer_runs_from_a_pack_without_the_idrid_folder(tmp_path):
    config_path, out = _pack(tmp_path)

    def from_the_pack(config):
        config["data"] = {"packed": str(out), "root": str(tmp_path / "no-such-folder"), "holdout": ["IDRiD_03"]}
        config["stages"] = config["stages"][:1]

    run = tmp_path / "run"
    assert train_main(["--config", str(_variant(config_path, "packed", from_the_pack)), "--out", str(run), "--no-progress"]) == 0
    records = _records(run)
    assert [r["event"] for r in records].count("val") == 1 and (run / "best.safetensors").is_file()


def test_a_missing_pack_is_a_clear_error(tmp_path, capsys):
    missing = _variant(_config(tmp_path), "missing", lambda config: config.update(data={"packed": str(tmp_path / "absent.npz")}))
    assert train_main(["--config", str(missing), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("redseg-train: error: packed data not found") and err.count("\n") == 1


def test_a_four_lesion_pack_holds_the_exudate_masks_and_a_red_lesion_pack_is_refused_for_them(tmp_path):
    from tests.training.fake_idrid import make_fake_idrid

    config_path, red_pack = _pack(tmp_path)
    make_fake_idrid(tmp_path / "idrid", names=NAMES, size=(96, 144), with_he=("IDRiD_01", "IDRiD_03"), exudates=True)
    four = _variant(config_path, "four", lambda config: config["model"].update(ex_stages=[2, 3], se_stages=[3, 4]))
    out = tmp_path / "four.npz"
    assert pack_main(["--config", str(four), "--out", str(out), "--no-progress"]) == 0
    model_config = _model_config(four)
    packed = read_pack(out, model_config)
    cached = WorkingScaleCache(model_config, None).get_all(list_samples(tmp_path / "idrid", lesions=model_config.lesions))
    assert all(np.array_equal(mine.masks, theirs.masks) and mine.masks.shape[0] == 4 for mine, theirs in zip(packed, cached))
    with pytest.raises(PackError, match=r"also segments \['EX', 'SE'\]"):
        read_pack(red_pack, model_config)
