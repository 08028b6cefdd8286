import json

import pytest
import torch
from safetensors.torch import save_file

from model import CheckpointError, RedSeg, load_checkpoint, save_checkpoint
from model.checkpoint import (
    DEFAULT_CHECKPOINT,
    FAST_CHECKPOINT,
    FORMAT,
    METADATA_KEY,
    read_metadata,
    update_metadata,
)

from tests.model.conftest import tiny_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model(seed=3, batch_norm=True, ma_stages=(1, 2, 3))
    with torch.no_grad():  # make the batch-norm buffers non-trivial
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    path = save_checkpoint(
        tmp_path / "sub" / "model.safetensors",
        model,
        thresholds={"MA": 0.3},
        name="tiny",
        version="1.2",
        provenance={"git": "abc"},
        metrics={"MA": {"auc_pr": 0.4}},
    )
    return model, path


def test_round_trip_identical_outputs(saved):
    model, path = saved
    checkpoint = load_checkpoint(path, fold=False)
    assert checkpoint.config == model.config
    assert not checkpoint.model.training
    x = torch.randn(1, 3, 45, 61)
    with torch.inference_mode():  # checkpoints load channels_last: the same layout gives the same bits
        expected, actual = model.to(memory_format=torch.channels_last)(x), checkpoint.model(x)
    assert torch.equal(expected.fused, actual.fused)
    for lesion in expected.sides:
        assert all(torch.equal(a, b) for a, b in zip(expected.sides[lesion], actual.sides[lesion]))


def test_metadata_round_trip(saved):
    _, path = saved
    checkpoint = load_checkpoint(path)
    assert checkpoint.thresholds == {"MA": 0.3, "HE": 0.5}
    assert (checkpoint.name, checkpoint.version) == ("tiny", "1.2")
    assert checkpoint.provenance == {"git": "abc"}
    assert checkpoint.metrics == {"MA": {"auc_pr": 0.4}}
    assert len(checkpoint.sha256) == 64
    assert read_metadata(path)["format"] == FORMAT


def test_no_temporary_files_left(saved):
    _, path = saved
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_half_precision_save(tmp_path):
    model = tiny_model(seed=4)
    full = save_checkpoint(tmp_path / "full.safetensors", model)
    half = save_checkpoint(tmp_path / "half.safetensors", model, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half, fold=False).model
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_a_float32_checkpoint_rewritten_in_half_precision_keeps_its_metadata(saved, tmp_path):
    _, path = saved
    half = update_metadata(path, out=tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    assert read_metadata(half) == read_metadata(path)
    full, halved = load_checkpoint(path).model.state_dict(), load_checkpoint(half).model.state_dict()
    for name, value in full.items():
        torch.testing.assert_close(halved[name], value, rtol=1e-3, atol=1e-4, msg=name)


def test_the_bundled_default_is_the_full_width_model_and_the_fast_one_a_quarter_of_it():
    default, fast = load_checkpoint(DEFAULT_CHECKPOINT), load_checkpoint(FAST_CHECKPOINT)
    assert (default.config.width, fast.config.width) == (1.0, 0.25)
    assert DEFAULT_CHECKPOINT.stat().st_size <= 30 * 10**6
    for checkpoint in (default, fast):  # calibrated, with a referral score and a macular-oedema risk score fitted for its own maps
        assert checkpoint.calibration is not None and checkpoint.referral is not None
        assert checkpoint.macular_oedema["validation"]["target"] == "risk of macular oedema (IDRiD grade > 0)"


def test_the_loaded_network_has_its_batch_norm_folded_unless_it_is_to_be_trained():
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in load_checkpoint(FAST_CHECKPOINT).model.modules())
    trainable = load_checkpoint(FAST_CHECKPOINT, fold=False).model
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in trainable.modules()) == 13
    RedSeg(trainable.config).load_state_dict(trainable.state_dict())


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"cut{cut}.safetensors"
        broken.write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_checkpoint(broken)


def test_corrupt_header(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    data[8:40] = b"\xff" * 32
    broken = tmp_path / "corrupt.safetensors"
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(broken)


def test_not_a_safetensors_file(tmp_path):
    pickle_file = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2)}, pickle_file)
    text_file = tmp_path / "notes.safetensors"
    text_file.write_text("hello")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    for path in (pickle_file, text_file, empty):
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            load_checkpoint(path)


def test_safetensors_without_our_metadata(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a RedSeg checkpoint"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(3)}, str(path), metadata={METADATA_KEY: json.dumps({"format": "something-else"})})
    with pytest.raises(CheckpointError, match="not a RedSeg checkpoint"):
        load_checkpoint(path)
    save_file({"w": torch.zeros(3)}, str(path), metadata={METADATA_KEY: "{not json"})
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def rewrite_metadata(path, tmp_path, change):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()[METADATA_KEY])
    change(meta)
    out = tmp_path / "edited.safetensors"
    save_file(tensors, str(out), metadata={METADATA_KEY: json.dumps(meta)})
    return out


def test_unknown_format_version(saved, tmp_path):
    _, path = saved
    edited = rewrite_metadata(path, tmp_path, lambda meta: meta.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(edited)


def test_weights_that_do_not_fit_the_config(saved, tmp_path):
    _, path = saved
    edited = rewrite_metadata(path, tmp_path, lambda meta: meta["config"].update(width=0.125))
    with pytest.raises(CheckpointError, match="valid RedSeg network"):
        load_checkpoint(edited)
    edited = rewrite_metadata(path, tmp_path, lambda meta: meta["config"].update(depth=3))
    with pytest.raises(CheckpointError, match="valid RedSeg network"):
        load_checkpoint(edited)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    import pickle

    model = tiny_model()
    path = save_checkpoint(tmp_path / "m.safetensors", model)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling during checkpoint load")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert isinstance(load_checkpoint(path).model, RedSeg)
