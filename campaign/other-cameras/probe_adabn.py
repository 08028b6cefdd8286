"""Test-time probe for issue 22: batch-norm statistics adapted to each photograph (AdaBN).

Another camera shifts what the encoder's features look like; its batch norm still centres and scales
them by IDRiD's training statistics. Before each photograph is predicted, this runs the unfolded
network once over its working-scale image and moves every batch norm's running mean and variance
towards that photograph's own, measured inside its field of view, layer by layer (each layer sees the
earlier layers already adapted; ``PROBE_REGION=all`` measures over the whole working-scale image, black
corners included, as the training crops' statistics were; ``PROBE_REFERENCE=1`` moves them by the
photograph's difference from the IDRiD training photographs' average statistics, measured the same way
(mean shifted, variance scaled; an IDRiD photograph barely moves): ``PROBE_ALPHA`` of the photograph's, the rest IDRiD's (default 0.5;
1 is plain AdaBN), in the first ``PROBE_LAYERS`` batch norms only (default all 13; 4 is the encoder's
stages 1 and 2, where a camera's colour, contrast and sharpness show). The adapted network is folded and predicts as the served one does. Then
``redseg-evaluate`` runs as usual (torch backend: the probe needs the network itself)::

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
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import training.evaluation.evaluate as evaluate
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from model.formats.images import read_image
from model.fov import fov_mask, working_mapping
from model.network import fold_batch_norm
from training.data.idrid import DEFAULT_ROOT, list_samples, split_holdout

ALPHA = float(os.environ.get("PROBE_ALPHA", "0.5"))
LAYERS = int(os.environ.get("PROBE_LAYERS", "13"))
WHOLE_IMAGE = os.environ.get("PROBE_REGION", "fov") == "all"
RELATIVE = os.environ.get("PROBE_REFERENCE") == "1"
served = evaluate.predict_probabilities


def checkpoint_argument(argv: list[str]) -> str:
    return argv[argv.index("--checkpoint") + 1] if "--checkpoint" in argv else str(DEFAULT_CHECKPOINT)


unfolded = load_checkpoint(checkpoint_argument(sys.argv[1:]), "cpu", fold=False).model


def image_statistics(model, image: np.ndarray, adapt=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per batch norm (the first ``LAYERS``), the mean and variance of its input over ``image``'s field of view
    (or all of it), in one forward of the working-scale image; ``adapt(index, layer, mean, var)`` may change
    the layer's running statistics before it normalises."""
    small = working_mapping(image, model.config).to_working(image)
    inside = np.ones(small.shape[:2], np.float32) if WHOLE_IMAGE else fov_mask(small).astype(np.float32)
    inside = torch.from_numpy(inside)[None, None]
    x = model.normalize(torch.from_numpy(small).permute(2, 0, 1)[None])
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][:LAYERS]
    measured = []

    def measure(layer: nn.BatchNorm2d, inputs):
        features = inputs[0].float()
        weight = F.interpolate(inside, size=features.shape[-2:], mode="nearest")
        total = weight.sum().clamp(min=1.0)
        mean = (features * weight).sum(dim=(0, 2, 3)) / total
        var = (((features - mean.view(1, -1, 1, 1)) ** 2) * weight).sum(dim=(0, 2, 3)) / total
        measured.append((mean, var))
        if adapt is not None:
            adapt(len(measured) - 1, layer, mean, var)

    hooks = [norm.register_forward_pre_hook(measure) for norm in norms]
    last = max(i for i, layer in enumerate(model.encoder.features) if layer is norms[-1])
    with torch.inference_mode():
        model.encoder.features[: last + 1](x)
    for hook in hooks:
        hook.remove()
    return measured


def reference_statistics() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The IDRiD training photographs' (not the hold-out's) statistics, averaged; cached in runs/."""
    cache = Path(f"runs/adabn-reference-{LAYERS}-{'all' if WHOLE_IMAGE else 'fov'}.pt")
    if cache.exists():
        return torch.load(cache)
    training, _ = split_holdout(list_samples(DEFAULT_ROOT, "train"))
    per_image = [image_statistics(unfolded, read_image(sample.image_path)) for sample in tqdm(training, desc="reference")]
    averaged = [(torch.stack([s[k][0] for s in per_image]).mean(0), torch.stack([s[k][1] for s in per_image]).mean(0))
                for k in range(len(per_image[0]))]
    cache.parent.mkdir(exist_ok=True)
    torch.save(averaged, cache)
    return averaged


REFERENCE = reference_statistics() if RELATIVE else None


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
