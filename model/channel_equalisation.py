"""Even out the per-channel ranges of one encoder stage's output before int8 quantisation.

int8 quantises a conv's input with one scale for all its channels. Stage 3's output, the input of the
encoder's stage 4, spans 1.3 to 20 across its channels on the calibration crops, so its quieter channels
keep few levels; quantised as it is, stage 4's first conv cost the default model 0.013 of hold-out
hard-exudate AP (docs/exudates.md). A positive per-channel scale commutes with ReLU and max pooling, so
dividing the stage's last conv's output channel c by s_c and multiplying the weights every consumer applies
to channel c (the next stage's first conv, the branches' side convs on this stage) by s_c leaves the float
network's outputs as they were (up to rounding) while giving every channel about the same range.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.network import RedSeg

SCALE_BOUND = 10.0
"""No channel is scaled by more than this or less than its inverse (a channel all but silent on the crops, which
might not be on a photograph, is not blown up to the mean range)."""


def stage_convs(model: RedSeg, stage: int) -> tuple[int, int]:
    """Where in ``encoder.features`` the last conv of ``stage`` (1-based) and the first conv of the next are,
    in a folded network."""
    layers = list(model.encoder.features)
    tap = model.encoder.tap_indices[stage - 1]
    producer = max(i for i in range(tap) if isinstance(layers[i], nn.Conv2d))
    consumer = next((i for i in range(tap, len(layers)) if isinstance(layers[i], nn.Conv2d)), None)
    if consumer is None:
        raise ValueError(f"stage {stage} is the encoder's last: nothing after it to equalise for")
    if any(isinstance(layer, nn.BatchNorm2d) for layer in layers[producer:consumer]):
        raise ValueError("equalise a network with its batch norm folded (model.network.fold_batch_norm)")
    return producer, consumer


def side_inputs(model: RedSeg, stage: int) -> list[nn.Conv2d]:
    """The first conv of every branch's side output on ``stage``."""
    convs = []
    for branch in model.branches.values():
        if stage in branch.stages:
            side = branch.side_convs[branch.stages.index(stage)]
            convs.append(side[0] if isinstance(side, nn.Sequential) else side)
    return convs


@torch.inference_mode()
def channel_maxima(model: RedSeg, layer_index: int, inputs: list[np.ndarray]) -> torch.Tensor:
    """Each channel's largest value into ``encoder.features[layer_index]`` over the network's ``inputs``
    (normalised, (1, 3, h, w)): the encoder run only up to that layer."""
    prefix = model.encoder.features[:layer_index]
    return torch.stack([prefix(torch.from_numpy(tensor)).amax(dim=(0, 2, 3)) for tensor in inputs]).amax(0)


@torch.no_grad()
def equalise_stage_output(model: RedSeg, inputs: list[np.ndarray], stage: int = 3, alpha: float = 1.0) -> torch.Tensor:
    """Rescale ``stage``'s output channels in place, channel c by s_c = (a_c / mean a) ** ``alpha`` (a_c: its
    largest value on ``inputs``), so that at ``alpha`` 1 each reaches the mean; returns the scales s_c."""
    producer_index, consumer_index = stage_convs(model, stage)
    maxima = channel_maxima(model, consumer_index, inputs)
    scales = ((maxima / maxima.mean()) ** alpha).clamp(1 / SCALE_BOUND, SCALE_BOUND)
    producer = model.encoder.features[producer_index]
    producer.weight.div_(scales.view(-1, 1, 1, 1))
    producer.bias.div_(scales)
    for conv in (model.encoder.features[consumer_index], *side_inputs(model, stage)):
        conv.weight.mul_(scales.view(1, -1, 1, 1))
    return scales
