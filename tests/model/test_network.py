import pytest
import torch

from model import LESIONS, RedSeg, RedSegConfig
from model.network import fold_batch_norm

from tests.model.conftest import tiny_model


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (17, 100), (64, 31), (16, 16)])
def test_output_shapes_for_any_size(size):
    model = tiny_model()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *size))
    assert out.fused.shape == (2, len(LESIONS), *size)
    for lesion in LESIONS:
        assert all(side.shape == (2, 1, *size) for side in out.sides[lesion])


@pytest.mark.parametrize(
    "ma_stages, he_stages", [((2, 3, 4), (3, 4, 5)), ((2, 3, 4, 5), (1, 2, 3, 4)), ((1,), (5,)), ((3,), (1, 2))]
)
def test_side_outputs_follow_the_taps(ma_stages, he_stages):
    model = tiny_model(ma_stages=ma_stages, he_stages=he_stages)
    assert len(model.encoder.tap_indices) == max(ma_stages + he_stages)
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 40, 40))
    assert len(out.sides["MA"]) == len(ma_stages)
    assert len(out.sides["HE"]) == len(he_stages)
    channels = model.config.stage_channels
    for lesion, stages in (("MA", ma_stages), ("HE", he_stages)):
        branch = model.branches[lesion]
        assert [conv.in_channels for conv in branch.side_convs] == [channels[s - 1] for s in stages]
        assert branch.fuse.in_channels == len(stages)


def test_fusion_starts_as_the_mean_of_the_sides():
    model = tiny_model(ma_stages=(2, 3, 4), he_stages=(2, 3, 4, 5))
    for lesion in LESIONS:
        fuse = model.branches[lesion].fuse
        n = fuse.in_channels
        assert torch.equal(fuse.weight, torch.full((1, n, 1, 1), 1.0 / n))
        assert torch.equal(fuse.bias, torch.zeros(1))
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 36, 36))
    for channel, lesion in enumerate(LESIONS):
        mean = torch.stack(out.sides[lesion]).mean(0)
        torch.testing.assert_close(out.fused[:, channel : channel + 1], mean, rtol=1e-5, atol=1e-6)


def test_full_width_backbone_is_vgg16():
    model = RedSeg(RedSegConfig())
    convs = [m for m in model.encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert model.encoder.stride == 16


def test_batch_norm_layers():
    model = tiny_model(batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.features) == 13


def test_encoder_stops_at_the_deepest_tapped_stage():
    model = tiny_model(ma_stages=(2, 3), he_stages=(3,))
    convs = [m for m in model.encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    assert model.encoder.stride == 4


def test_gradients_reach_every_parameter():
    model = tiny_model().train()
    out = model(torch.randn(1, 3, 48, 48))
    loss = out.fused.sum() + sum(s.sum() for sides in out.sides.values() for s in sides)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_normalize_uses_config_mean_and_std():
    model = tiny_model()
    pixel = torch.tensor(model.config.mean).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert torch.allclose(model.normalize(pixel), torch.zeros(1, 3, 2, 2), atol=1e-6)


def test_folding_batch_norm_keeps_the_outputs():
    model = tiny_model(batch_norm=True).train()
    with torch.no_grad():  # running statistics and affine weights far from the identity
        for _ in range(3):
            model(torch.randn(2, 3, 48, 48) * 3 + 1)
        for layer in model.encoder.features:
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.uniform_(0.5, 2.0)
                layer.bias.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        expected = model(x).fused
        folded = fold_batch_norm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x).fused, expected, rtol=1e-4, atol=1e-4)


def test_folding_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norm(tiny_model(batch_norm=True).train())
