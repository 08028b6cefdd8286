"""Test-time probe for issue 22: per-photograph colour normalisation to IDRiD's colour, before the network.

Each photograph's channels are scaled so that their means inside the field of view match the mean of
IDRiD's 44 training photographs' (gains clipped to 0.5..2), then ``redseg-evaluate`` runs as usual::

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/other-cameras/probe_colour.py <redseg-evaluate arguments>
"""

import sys

import cv2
import numpy as np

import training.evaluation.evaluate as evaluate
from model.fov import fov_mask
from model.formats.images import read_image
from training.data.idrid import DEFAULT_ROOT, list_samples, split_holdout


def channel_means(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (image.shape[1] // 8, image.shape[0] // 8), interpolation=cv2.INTER_AREA)
    return small[fov_mask(small)].reshape(-1, 3).mean(axis=0)


REFERENCE = np.mean([channel_means(read_image(s.image_path)) for s in split_holdout(list_samples(DEFAULT_ROOT))[0]], axis=0)
print(f"IDRiD training photographs' mean colour inside the field of view: {np.round(REFERENCE, 1)}", flush=True)
served = evaluate.predict_probabilities


def normalised(model, image, *args, **kwargs):
    gains = np.clip(REFERENCE / np.maximum(channel_means(image), 1.0), 0.5, 2.0)
    return served(model, np.clip(image * gains, 0, 255).astype(np.uint8), *args, **kwargs)


evaluate.predict_probabilities = normalised
sys.exit(evaluate.main(sys.argv[1:]))
