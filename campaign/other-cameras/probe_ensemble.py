"""Test-time probe for issue 22: the two bundled models averaged.

The quarter-width fast model is behind the default one on IDRiD but ahead of it on DiaRetDB1-train
(HE AP, MA lesion FROC): two networks that fit IDRiD's look differently may travel better together.
Each photograph is predicted by the ``redseg-evaluate`` checkpoint and by ``PROBE_PARTNER`` (default
the fast model), each calibrated by its own checkpoint, and the probabilities are averaged with
weight ``PROBE_WEIGHT`` (default 0.5) on the partner; the first checkpoint's operating thresholds
stay. Then ``redseg-evaluate`` runs as usual.

    PROBE_WEIGHT=0.5 OMP_WAIT_POLICY=PASSIVE .venv/bin/python campaign/other-cameras/probe_ensemble.py \
        --backend torch <redseg-evaluate arguments>
"""

import os
import sys

import training.evaluation.evaluate as evaluate
from model.backends import load_for_inference
from model.devices import resolve_device

PARTNER = os.environ.get("PROBE_PARTNER", "checkpoints/redseg-fast.safetensors")
WEIGHT = float(os.environ.get("PROBE_WEIGHT", "0.5"))
served = evaluate.predict_probabilities
arguments = evaluate.build_parser().parse_known_args(sys.argv[1:])[0]
partner = load_for_inference(PARTNER, resolve_device(arguments.device), arguments.backend)


def averaged(model, image, settings, calibration, *args, **kwargs):
    first = served(model, image, settings, calibration, *args, **kwargs)
    second = served(partner.model, image, settings, partner.calibration if calibration is not None else None)
    if second.shape != first.shape:
        raise ValueError(f"the partner's maps {second.shape} do not match {first.shape}: lesions or scaling differ")
    return (1 - WEIGHT) * first + WEIGHT * second


evaluate.predict_probabilities = averaged
sys.exit(evaluate.main(sys.argv[1:]))
