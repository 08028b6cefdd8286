"""Test-time probe for issue 22: batch-norm statistics adapted to each photograph (AdaBN).

Another camera shifts what the encoder's features look like; its batch norm still centres and scales
them by IDRiD's training statistics. Before each photograph is predicted, this runs the unfolded
network once over its working-scale image and moves every batch norm's running mean and variance
towards that photograph's own, measured inside its field of view, layer by layer (each layer sees the
earlier layers already adapted; ``PROBE_REGION=all`` measures over the whole working-scale image, black
corners included, as the training crops' statistics were): ``PROBE_ALPHA`` of the photograph's, the rest IDRiD's (default 0.5;
1 is plain AdaBN), in the first ``PROBE_LAYERS`` batch norms only (default all 13; 4 is the encoder's
stages 1 and 2, where a camera's colour, contrast and sharpness show). The adapted network is folded and predicts as the served one does. Then
``redseg-evaluate`` runs as usual (torch backend: the probe needs the network itself)::

    PROBE_ALPHA=0.5 OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/other-cameras/probe_adabn.py \
        --backend torch <redseg-evaluate arguments>
"""

import copy
import os
import sys

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import training.evaluation.evaluate as evaluate
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from model.fov import fov_mask, working_mapping
from model.network import fold_batch_norm

ALPHA = float(os.environ.get("PROBE_ALPHA", "0.5"))
LAYERS = int(os.environ.get("PROBE_LAYERS", "13"))
WHOLE_IMAGE = os.environ.get("PROBE_REGION", "fov") == "all"
served = evaluate.predict_probabilities


def checkpoint_argument(argv: list[str]) -> str:
    return argv[argv.index("--checkpoint") + 1] if "--checkpoint" in argv else str(DEFAULT_CHECKPOINT)


unfolded = load_checkpoint(checkpoint_argument(sys.argv[1:]), "cpu", fold=False).model


def adapted_to(image: np.ndarray):
    """A folded copy of the network whose batch norms hold statistics moved towards ``image``'s."""
    model = copy.deepcopy(unfolded)
    small = working_mapping(image, model.config).to_working(image)
    inside = torch.from_numpy(np.ones(small.shape[:2], np.float32) if WHOLE_IMAGE else fov_mask(small).astype(np.float32))[None, None]
    x = model.normalize(torch.from_numpy(small).permute(2, 0, 1)[None])

    def adapt(layer: nn.BatchNorm2d, inputs):
        features = inputs[0].float()
        weight = F.interpolate(inside, size=features.shape[-2:], mode="nearest")
        total = weight.sum().clamp(min=1.0)
        mean = (features * weight).sum(dim=(0, 2, 3)) / total
        var = (((features - mean.view(1, -1, 1, 1)) ** 2) * weight).sum(dim=(0, 2, 3)) / total
        layer.running_mean.mul_(1 - ALPHA).add_(ALPHA * mean)
        layer.running_var.mul_(1 - ALPHA).add_(ALPHA * var)

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][:LAYERS]
    hooks = [norm.register_forward_pre_hook(adapt) for norm in norms]
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    return fold_batch_norm(model.eval())


def adapted(model, image, *args, **kwargs):
    return served(adapted_to(image), image, *args, **kwargs)


cv2.setNumThreads(1)
evaluate.predict_probabilities = adapted
sys.exit(evaluate.main(sys.argv[1:]))
