import json

import numpy as np
import pytest
import torch

from model.calibration import Calibration, Platt
from model.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint, update_metadata
from model.inference import TileSettings, predict_probabilities

from tests.model.conftest import fundus_like, tiny_model

CALIBRATION = Calibration(
    modes={"none": {"MA": Platt(0.5, -3.0), "HE": Platt(0.8, -1.0)}, "flips": {"MA": Platt(0.6, -3.5), "HE": Platt(1.0, -1.2)}},
    raw_thresholds={"MA": 0.996, "HE": 0.948},
    fitted_on={"images": ["IDRiD_05"]},
)


def test_platt_is_monotone_and_the_identity_at_slope_one():
    p = torch.linspace(0.001, 0.999, 101)
    assert torch.allclose(Platt(1.0, 0.0).apply(p), p, atol=1e-5)
    scaled = Platt(0.4, -2.0).apply(p)
    assert (scaled.diff() > 0).all()
    assert torch.allclose(scaled, torch.sigmoid(0.4 * torch.logit(p) - 2.0), atol=1e-6)


def test_calibration_picks_its_mode_and_falls_back_to_none():
    maps = torch.full((2, 3, 4), 0.9)
    none = CALIBRATION.apply(maps, "none")
    assert torch.allclose(none[0], Platt(0.5, -3.0).apply(maps[0]))
    assert torch.allclose(CALIBRATION.apply(maps, "dihedral"), none)  # not fitted: the plain fit
    assert not torch.allclose(CALIBRATION.apply(maps, "flips"), none)


def test_round_trip_and_bad_calibrations():
    assert Calibration.from_dict(json.loads(json.dumps(CALIBRATION.to_dict()))) == CALIBRATION
    data = CALIBRATION.to_dict()
    with pytest.raises(ValueError, match="none"):
        Calibration.from_dict(data | {"modes": {"flips": data["modes"]["flips"]}})
    with pytest.raises(ValueError, match="method"):
        Calibration.from_dict(data | {"method": "isotonic"})


def test_checkpoints_carry_it_and_older_ones_load_without(tmp_path):
    model = tiny_model()
    old = save_checkpoint(tmp_path / "old.safetensors", model, thresholds={"MA": 0.996, "HE": 0.948})
    loaded = load_checkpoint(old)
    assert loaded.calibration is None and loaded.raw_thresholds == loaded.thresholds
    new = update_metadata(old, tmp_path / "new.safetensors", calibration=CALIBRATION.to_dict(),
                          thresholds={"MA": 0.3, "HE": 0.41})
    calibrated = load_checkpoint(new)
    assert calibrated.calibration == CALIBRATION
    assert calibrated.thresholds == {"MA": 0.3, "HE": 0.41} and calibrated.raw_thresholds == {"MA": 0.996, "HE": 0.948}
    for key, value in calibrated.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    assert read_metadata(old).get("calibration") is None  # the original is untouched
    broken = update_metadata(old, tmp_path / "broken.safetensors", calibration={"method": "platt", "modes": {}})
    with pytest.raises(CheckpointError):
        load_checkpoint(broken)


def test_inference_applies_it_before_the_field_of_view_mask():
    model, image = tiny_model(), fundus_like(170, 256)  # at the working scale: no resize between the two
    settings = TileSettings(tile_size=128)
    raw = predict_probabilities(model, image, settings)
    calibrated = predict_probabilities(model, image, settings, CALIBRATION)
    inside = raw[0] > 0
    expected = Platt(0.5, -3.0).apply(torch.from_numpy(raw[0][inside])).numpy()
    assert np.allclose(calibrated[0][inside], expected, atol=2e-3)
    assert (calibrated[:, ~inside] == 0).all()
