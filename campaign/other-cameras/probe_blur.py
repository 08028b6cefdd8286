"""Test-time probe for issue 22: a photograph that reaches the working scale barely shrunk keeps pixel-level
detail and noise that IDRiD's photographs, shrunk about 3 times, never show the network. This blurs each
photograph before the network with a Gaussian, nothing where the
photograph is shrunk as much as IDRiD's or more (so the IDRiD hold-out is untouched): ``PROBE_SIGMA``
working-scale pixels (default 0.5), that is PROBE_SIGMA / factor of the photograph's. Then ``redseg-evaluate``
runs as usual::

    PROBE_SIGMA=0.5 OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/other-cameras/probe_blur.py <redseg-evaluate arguments>
"""

import os
import sys

import cv2

import training.evaluation.evaluate as evaluate
from model.config import RedSegConfig
from model.fov import working_mapping

SIGMA = float(os.environ.get("PROBE_SIGMA", "0.5"))
"""The blur, in working-scale pixels, of a photograph taken at the working scale (factor 1)."""
IDRID_FACTOR = 1146.2 / 3450  # IDRiD's fundus disc (about 3450 px across) to the working disc
served = evaluate.predict_probabilities


def prefiltered(model, image, *args, **kwargs):
    factor = working_mapping(image, model.config).scale
    if factor > IDRID_FACTOR * 1.2:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=SIGMA / factor)
    return served(model, image, *args, **kwargs)


evaluate.predict_probabilities = prefiltered
sys.exit(evaluate.main(sys.argv[1:]))
