"""Test-time probe for issue 22: batch-norm statistics adapted to each photograph (AdaBN).

Another camera shifts what the encoder's features look like; its batch norm still centres and scales
them by IDRiD's training statistics. Before each photograph is predicted, this runs the unfolded
network once over its working-scale image and moves the batch norms' running means and variances
towards that photograph's own, layer by layer (each layer sees the earlier ones already adapted). The
adapted network is folded and predicts as the served one does; then ``redseg-evaluate`` runs as usual
(torch backend: the probe needs the network itself). Settings:

- ``PROBE_ALPHA``: how far towards the photograph's statistics (default 0.5; 1 is plain AdaBN);
- ``PROBE_LAYERS``: only the first N batch norms (default all 13; 4 is stages 1 and 2, where a camera's
  colour, contrast and sharpness show);
- ``PROBE_REGION=all``: measured over the whole working-scale image, black corners included, as the
  training crops' statistics were, instead of inside the field of view;
- ``PROBE_REFERENCE=1``: moved by the photograph's difference from the IDRiD training photographs'
  average statistics measured the same way (mean shifted, variance scaled), so that an IDRiD
  photograph barely moves, instead of towards the photograph's own.

    PROBE_ALPHA=0.5 OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/other-cameras/probe_adabn.py \
        --backend torch <redseg-evaluate arguments>
"""

import copy
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import training.evaluation.evaluate as evaluate
from batch_norm_statistics import (cached, idrid_training_paths, masked_moments, norm_indices, unfolded_network,
                                   working_input)
from model.formats.images import read_image
from model.network import fold_batch_norm

ALPHA = float(os.environ.get("PROBE_ALPHA", "0.5"))
LAYERS = int(os.environ.get("PROBE_LAYERS", "13"))
WHOLE_IMAGE = os.environ.get("PROBE_REGION", "fov") == "all"
RELATIVE = os.environ.get("PROBE_REFERENCE") == "1"
served = evaluate.predict_probabilities
unfolded = unfolded_network()


def image_statistics(model, image: np.ndarray, adapt=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch norm (the first ``LAYERS``), the mean and variance of its input over ``image``'s field of view
    (or all of it), in one forward of the working-scale image; ``adapt(index, layer, mean, var)`` may change
    the layer's running statistics before it normalises."""
    x, inside = working_input(model, image, WHOLE_IMAGE)
    indices = norm_indices(model, LAYERS)
    measured = []

    def measure(layer: nn.BatchNorm2d, inputs):
        mean, var, _ = masked_moments(inputs[0].float(), inside)
        measured.append((mean, var))
        if adapt is not None:
            adapt(len(measured) - 1, layer, mean, var)

    hooks = [model.encoder.features[index].register_forward_pre_hook(measure) for index in indices]
    with torch.inference_mode():
        model.encoder.features[: indices[-1] + 1](x)
    for hook in hooks:
        hook.remove()
    return measured


def reference_statistics() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The IDRiD training photographs' (not the hold-out's) statistics, averaged over the photographs."""
    per_image = [image_statistics(unfolded, read_image(path)) for path in tqdm(idrid_training_paths(), desc="reference")]
    return [(torch.stack([s[k][0] for s in per_image]).mean(0), torch.stack([s[k][1] for s in per_image]).mean(0))
            for k in range(len(per_image[0]))]


REFERENCE_CACHE = Path(f"runs/adabn-reference-{LAYERS}-{'all' if WHOLE_IMAGE else 'fov'}.pt")
REFERENCE = cached(REFERENCE_CACHE, reference_statistics) if RELATIVE else None


def adapted_to(image: np.ndarray):
    """A folded copy of the network whose batch norms hold statistics moved towards ``image``'s."""
    model = copy.deepcopy(unfolded)

    def adapt(index: int, layer: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor):
        if REFERENCE is None:
            layer.running_mean.mul_(1 - ALPHA).add_(ALPHA * mean)
            layer.running_var.mul_(1 - ALPHA).add_(ALPHA * var)
        else:
            reference_mean, reference_var = REFERENCE[index]
            layer.running_mean.add_(ALPHA * (mean - reference_mean))
            layer.running_var.mul_((var / reference_var.clamp(min=1e-6)) ** ALPHA)

    image_statistics(model, image, adapt)
    return fold_batch_norm(model.eval())


def adapted(model, image, *args, **kwargs):
    return served(adapted_to(image), image, *args, **kwargs)


cv2.setNumThreads(1)
evaluate.predict_probabilities = adapted
sys.exit(evaluate.main(sys.argv[1:]))
