"""Probe for issue 22: batch-norm statistics adapted to a site's camera, from its unlabelled photographs.

Per photograph, batch-norm statistics cost the IDRiD hold-out (``probe_adabn.py``): a photograph's own
statistics carry its lesions and exposure. A site's camera is shared by all its photographs, so this
measures the first ``PROBE_LAYERS`` batch norms' inputs (default 4: stages 1 and 2) pooled over a set of
the site's photographs, inside their fields of view, layer by layer (each layer measured with the
earlier ones already adapted), and moves IDRiD's running statistics by the site's difference from
the 44 IDRiD training photographs measured the same way (mean shifted, variance scaled). No labels
are read; the adapted network predicts every photograph of that site with no extra work.

``PROBE_SITE`` says which photographs adapt which:

- ``PROBE_SITE=folds:DIR``: the photographs of DIR (``--photos``), sorted, in two halves; each half is
  predicted by the network adapted on the other half, so no photograph is predicted by statistics it
  contributed to.
- ``PROBE_SITE=DIR[:N]``: the first N photographs of DIR (all by default) adapt the network that
  predicts everything (e.g. IDRiD's graded photographs for the IDRiD hold-out: the same camera).

    PROBE_SITE=folds:$D/images .venv/bin/python campaign/other-cameras/probe_site_bn.py --backend torch \
        --photos $D/images ... (redseg-evaluate arguments)
"""

import copy
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import training.evaluation.evaluate as evaluate
from batch_norm_statistics import (cached, idrid_training_paths, masked_moments, norm_indices, unfolded_network,
                                   working_input)
from model.formats.images import read_image
from model.network import fold_batch_norm
from training.evaluation.labelled_folder import images_by_stem

LAYERS = int(os.environ.get("PROBE_LAYERS", "4"))
SITE = os.environ.get("PROBE_SITE", "")
served = evaluate.predict_probabilities
unfolded = unfolded_network()
Statistics = list[tuple[torch.Tensor, torch.Tensor]]


def pooled_statistics(model, inputs, layer_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and variance of the input of ``model.encoder.features[layer_index]`` (a batch norm) pooled
    over the field-of-view pixels of all ``inputs``."""
    total, first, second = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for x, inside in inputs:
            mean, var, pixels = masked_moments(model.encoder.features[:layer_index](x).float(), inside)
            total, first, second = total + pixels, first + mean * pixels, second + (var + mean**2) * pixels
    mean = first / total
    return mean, second / total - mean**2


def site_statistics(model, images: list[np.ndarray], reference: Statistics | None = None) -> Statistics:
    """The first ``LAYERS`` batch norms' pooled statistics over ``images``, layer by layer; with a
    ``reference``, each batch norm is moved by the difference before the next is measured."""
    inputs = [working_input(model, image) for image in images]
    measured = []
    for k, index in enumerate(norm_indices(model, LAYERS)):
        mean, var = pooled_statistics(model, inputs, index)
        measured.append((mean, var))
        if reference is not None:
            norm = model.encoder.features[index]
            norm.running_mean.add_(mean - reference[k][0])
            norm.running_var.mul_(var / reference[k][1].clamp(min=1e-6))
    return measured


def adapted_on(images: list[np.ndarray], reference: Statistics) -> nn.Module:
    """A folded copy of the network whose first batch norms are moved by the site's difference from IDRiD's."""
    model = copy.deepcopy(unfolded)
    site_statistics(model, images, reference)
    return fold_batch_norm(model.eval())


def read_all(paths: list[Path]) -> list[np.ndarray]:
    return [read_image(path) for path in tqdm(paths, desc="site photographs")]


def idrid_reference() -> Statistics:
    """The 44 IDRiD training photographs' statistics, pooled as a site's are."""
    return cached(Path(f"runs/site-bn-reference-{LAYERS}.pt"),
                  lambda: site_statistics(unfolded, read_all(idrid_training_paths())))


def fingerprint(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def site_models() -> dict[str, nn.Module] | nn.Module:
    """One adapted network, or (folds) one per photograph's fingerprint."""
    reference = idrid_reference()
    if not SITE.startswith("folds:"):
        folder, _, count = SITE.partition(":")
        paths = sorted(images_by_stem(Path(folder)).values())[: int(count) if count else None]
        return adapted_on(read_all(paths), reference)
    images = read_all(sorted(images_by_stem(Path(SITE.removeprefix("folds:"))).values()))
    halves = [images[0::2], images[1::2]]
    models = {}
    for predicted, adapting in ((halves[0], halves[1]), (halves[1], halves[0])):
        model = adapted_on(adapting, reference)
        models.update({fingerprint(image): model for image in predicted})
    return models


SITE_MODELS = site_models()


def adapted(model, image, *args, **kwargs):
    site = SITE_MODELS[fingerprint(image)] if isinstance(SITE_MODELS, dict) else SITE_MODELS
    return served(site, image, *args, **kwargs)


evaluate.predict_probabilities = adapted
sys.exit(evaluate.main(sys.argv[1:]))
