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
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import training.evaluation.evaluate as evaluate
from model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from model.formats.images import read_image
from model.fov import fov_mask, working_mapping
from model.network import fold_batch_norm
from training.data.idrid import DEFAULT_ROOT, list_samples, split_holdout
from training.evaluation.labelled_folder import images_by_stem

LAYERS = int(os.environ.get("PROBE_LAYERS", "4"))
SITE = os.environ.get("PROBE_SITE", "")
served = evaluate.predict_probabilities


def checkpoint_argument(argv: list[str]) -> str:
    return argv[argv.index("--checkpoint") + 1] if "--checkpoint" in argv else str(DEFAULT_CHECKPOINT)


def working_input(model, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    small = working_mapping(image, model.config).to_working(image)
    inside = torch.from_numpy(fov_mask(small).astype(np.float32))[None, None]
    return model.normalize(torch.from_numpy(small).permute(2, 0, 1)[None]), inside


def pooled_statistics(model, inputs, layer_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and variance of the input of ``model.encoder.features[layer_index]`` (a batch norm) pooled
    over the field-of-view pixels of all ``inputs``."""
    total, first, second = 0.0, 0.0, 0.0
    with torch.inference_mode():
        for x, inside in inputs:
            features = model.encoder.features[:layer_index](x).float()
            weight = F.interpolate(inside, size=features.shape[-2:], mode="nearest")
            total += weight.sum()
            first = first + (features * weight).sum(dim=(0, 2, 3))
            second = second + (features**2 * weight).sum(dim=(0, 2, 3))
    mean = first / total
    return mean, second / total - mean**2


def norm_indices(model) -> list[int]:
    return [i for i, layer in enumerate(model.encoder.features) if isinstance(layer, nn.BatchNorm2d)][:LAYERS]


def site_statistics(model, paths: list[Path]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    inputs = [working_input(model, read_image(path)) for path in tqdm(paths, desc="site photographs")]
    return [pooled_statistics(model, inputs, index) for index in norm_indices(model)]


def adapted_on(paths: list[Path], reference) -> nn.Module:
    """A folded copy of the network whose first batch norms are moved by the site's difference from IDRiD's."""
    model = copy.deepcopy(unfolded)
    inputs = [working_input(model, read_image(path)) for path in tqdm(paths, desc="site photographs")]
    for k, index in enumerate(norm_indices(model)):
        mean, var = pooled_statistics(model, inputs, index)
        norm = model.encoder.features[index]
        norm.running_mean.add_(mean - reference[k][0])
        norm.running_var.mul_(var / reference[k][1].clamp(min=1e-6))
    return fold_batch_norm(model.eval())


def idrid_reference() -> list[tuple[torch.Tensor, torch.Tensor]]:
    cache = Path(f"runs/site-bn-reference-{LAYERS}.pt")
    if not cache.exists():
        training, _ = split_holdout(list_samples(DEFAULT_ROOT, "train"))
        cache.parent.mkdir(exist_ok=True)
        torch.save(site_statistics(unfolded, [sample.image_path for sample in training]), cache)
    return torch.load(cache)


def fingerprint(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


def site_models() -> dict[str, nn.Module] | nn.Module:
    """One adapted network, or (folds) one per photograph's fingerprint."""
    reference = idrid_reference()
    if not SITE.startswith("folds:"):
        folder, _, count = SITE.partition(":")
        paths = sorted(images_by_stem(Path(folder)).values())[: int(count) if count else None]
        return adapted_on(paths, reference)
    paths = sorted(images_by_stem(Path(SITE.removeprefix("folds:"))).values())
    halves = [paths[0::2], paths[1::2]]
    models = {}
    for predicted, adapting in ((halves[0], halves[1]), (halves[1], halves[0])):
        model = adapted_on(adapting, reference)
        models.update({fingerprint(read_image(path)): model for path in predicted})
    return models


unfolded = load_checkpoint(checkpoint_argument(sys.argv[1:]), "cpu", fold=False).model
SITE_MODELS = site_models()


def adapted(model, image, *args, **kwargs):
    site = SITE_MODELS[fingerprint(image)] if isinstance(SITE_MODELS, dict) else SITE_MODELS
    return served(site, image, *args, **kwargs)


evaluate.predict_probabilities = adapted
sys.exit(evaluate.main(sys.argv[1:]))
