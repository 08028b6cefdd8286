"""Equalising a stage's output channels before int8: the float network answers as before, the ranges even out."""

import numpy as np
import pytest
import torch

from model.channel_equalisation import SCALE_BOUND, channel_maxima, equalise_stage_output, stage_convs
from model.network import fold_batch_norm

from tests.model.conftest import tiny_model


def folded_model(seed: int = 0):
    """A tiny four-lesion network like the default one (batch norm, hidden exudate side convs), its batch norm
    given uneven statistics so that channel ranges differ, then folded."""
    model = tiny_model(seed, batch_norm=True, ex_stages=(2, 3, 4, 5), se_stages=(2, 3, 4, 5), exudate_hidden=4)
    generator = torch.Generator().manual_seed(seed)
    for layer in model.encoder.features:
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.weight.data = torch.rand(layer.num_features, generator=generator) * 4
            layer.running_var = torch.rand(layer.num_features, generator=generator) + 0.1
    return fold_batch_norm(model)


def crops(count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(1, 3, 64, 96)).astype(np.float32) for _ in range(count)]


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_the_float_network_answers_as_before(stage):
    model = folded_model()
    probe = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, 80, 112)).astype(np.float32))
    with torch.inference_mode():
        before = model(probe)
    equalise_stage_output(model, crops(), stage)
    with torch.inference_mode():
        after = model(probe)
    torch.testing.assert_close(after.fused, before.fused, rtol=1e-4, atol=1e-4)
    for lesion, sides in before.sides.items():
        for side_before, side_after in zip(sides, after.sides[lesion]):
            torch.testing.assert_close(side_after, side_before, rtol=1e-4, atol=1e-4)


def test_every_channel_reaches_about_the_mean_range_within_the_bound():
    model = folded_model()
    consumer = stage_convs(model, 3)[1]
    before = channel_maxima(model, consumer, crops())
    assert before.max() / before.min() > 3  # uneven to begin with
    scales = equalise_stage_output(model, crops(), 3)
    after = channel_maxima(model, consumer, crops())
    within = (scales > 1 / SCALE_BOUND) & (scales < SCALE_BOUND)
    torch.testing.assert_close(after[within], torch.full_like(after[within], before.mean().item()), rtol=1e-4, atol=1e-5)


def test_a_channel_silent_on_the_crops_is_scaled_no_more_than_the_bound():
    model = folded_model()
    producer = model.encoder.features[stage_convs(model, 3)[0]]
    with torch.no_grad():
        producer.bias[0] = -1e6  # after ReLU, channel 0 is 0 everywhere
    scales = equalise_stage_output(model, crops(), 3)
    assert scales[0].item() == pytest.approx(1 / SCALE_BOUND)
    assert scales.min() >= 1 / SCALE_BOUND and scales.max() <= SCALE_BOUND


def test_an_unfolded_network_or_the_last_stage_is_refused():
    with pytest.raises(ValueError, match="folded"):
        equalise_stage_output(tiny_model(batch_norm=True), crops(), 3)
    with pytest.raises(ValueError, match="last"):
        equalise_stage_output(folded_model(), crops(), 5)
