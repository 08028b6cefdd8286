from collections import OrderedDict

import pytest
import torch

from model import RedSeg, RedSegConfig
from model.config import VGG16_STAGE_CHANNELS, VGG16_STAGE_CONVS
from model.imagenet import PretrainedWeightsError, load_imagenet_encoder


def torchvision_vgg16_state(batch_norm: bool) -> OrderedDict:
    """A state dict with torchvision's ``vgg16`` / ``vgg16_bn`` keys and shapes, filled with random values."""
    torch.manual_seed(1)
    state, index, in_channels = OrderedDict(), 0, 3
    for stage, (channels, convs) in enumerate(zip(VGG16_STAGE_CHANNELS, VGG16_STAGE_CONVS)):
        if stage > 0:
            index += 1  # MaxPool2d
        for _ in range(convs):
            state[f"features.{index}.weight"] = torch.randn(channels, in_channels, 3, 3)
            state[f"features.{index}.bias"] = torch.randn(channels)
            index += 1
            if batch_norm:
                state[f"features.{index}.weight"] = torch.rand(channels) + 0.5
                state[f"features.{index}.bias"] = torch.randn(channels)
                state[f"features.{index}.running_mean"] = torch.randn(channels)
                state[f"features.{index}.running_var"] = torch.rand(channels) + 0.5
                state[f"features.{index}.num_batches_tracked"] = torch.tensor(7)
                index += 1
            index += 1  # ReLU
            in_channels = channels
    state["classifier.0.weight"] = torch.randn(8, 8)
    state["classifier.0.bias"] = torch.randn(8)
    return state


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("imagenet") / "vgg16.pth"
    torch.save(torchvision_vgg16_state(batch_norm=False), path)
    return path


@pytest.fixture(scope="module")
def vgg16_bn_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("imagenet") / "vgg16_bn.pth"
    torch.save(torchvision_vgg16_state(batch_norm=True), path)
    return path


def test_torchvision_indices():
    keys = [k for k in torchvision_vgg16_state(False) if k.endswith(".weight") and k.startswith("features.")]
    assert keys[0] == "features.0.weight" and keys[-1] == "features.28.weight" and len(keys) == 13
    bn = [k for k in torchvision_vgg16_state(True) if k.endswith("running_var")]
    assert bn[0] == "features.1.running_var" and bn[-1] == "features.41.running_var"


@pytest.mark.parametrize("batch_norm", [False, True])
def test_loads_every_encoder_tensor(batch_norm, vgg16_file, vgg16_bn_file):
    model = RedSeg(RedSegConfig(batch_norm=batch_norm))
    source = vgg16_bn_file if batch_norm else vgg16_file
    loaded = load_imagenet_encoder(model, source)
    state = torch.load(source, weights_only=True)
    assert len(loaded) == len(model.encoder.features.state_dict())
    for key, value in model.encoder.features.state_dict().items():
        assert torch.equal(value, state[f"features.{key}"]), key
    last_conv = 40 if batch_norm else 28
    assert torch.equal(model.encoder.features[last_conv].weight, state[f"features.{last_conv}.weight"])


def test_branches_untouched(vgg16_file):
    model = RedSeg(RedSegConfig())
    before = {k: v.clone() for k, v in model.branches.state_dict().items()}
    load_imagenet_encoder(model, vgg16_file)
    assert all(torch.equal(before[k], v) for k, v in model.branches.state_dict().items())


def test_shallower_encoder_takes_a_prefix(vgg16_file):
    model = RedSeg(RedSegConfig(ma_stages=(2, 3), he_stages=(3,)))
    assert len(load_imagenet_encoder(model, vgg16_file)) == 14


def test_width_other_than_one_is_a_clear_error(vgg16_file):
    with pytest.raises(PretrainedWeightsError, match="width=1.0"):
        load_imagenet_encoder(RedSeg(RedSegConfig(width=0.5)), vgg16_file)


def test_batch_norm_mismatch_is_a_clear_error(vgg16_file, vgg16_bn_file):
    with pytest.raises(PretrainedWeightsError, match="VGG16-BN"):
        load_imagenet_encoder(RedSeg(RedSegConfig(batch_norm=True)), vgg16_file)
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        load_imagenet_encoder(RedSeg(RedSegConfig(batch_norm=False)), vgg16_bn_file)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_imagenet_encoder(RedSeg(RedSegConfig(width=0.0625)), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(PretrainedWeightsError, match="not a readable"):
        load_imagenet_encoder(RedSeg(RedSegConfig(width=0.0625)), junk)
