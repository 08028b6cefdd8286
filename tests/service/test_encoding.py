"""Turning probabilities into the response's results, and the outputs parameter."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from service.encoding import parse_outputs, render
from service.errors import ServiceError


@pytest.mark.parametrize(
    "value, expected",
    [("none", set()), ("", set()), ("masks", {"masks"}), ("Masks, overlay", {"masks", "overlay"}),
     ("masks,probabilities,overlay", {"masks", "probabilities", "overlay"})],
)
def test_parse_outputs(value: str, expected: set):
    assert parse_outputs(value) == expected


@pytest.mark.parametrize("value", ["heatmap", "masks,heatmap", "none,masks"])
def test_unknown_outputs_are_422(value: str):
    with pytest.raises(ServiceError) as error:
        parse_outputs(value)
    assert error.value.status == 422


def test_render_thresholds_counts_and_encodes():
    probabilities = np.zeros((2, 10, 20), np.float32)
    probabilities[0, 1:3, 1:3] = 0.9
    probabilities[0, 6:8, 10:15] = 0.6
    probabilities[1, 5, 5] = 0.3
    image = np.zeros((10, 20, 3), np.uint8)
    lesions, overlay = render(image, probabilities, {"MA": 0.5, "HE": 0.25}, frozenset({"masks", "probabilities", "overlay"}))
    assert (lesions["MA"].area_pixels, lesions["MA"].components) == (14, 2)
    assert (lesions["HE"].area_pixels, lesions["HE"].components, lesions["HE"].threshold) == (1, 1, 0.25)
    assert lesions["MA"].area_fraction == 14 / 200
    probability = cv2.imdecode(np.frombuffer(base64.b64decode(lesions["MA"].probability_png), np.uint8), cv2.IMREAD_UNCHANGED)
    assert probability.dtype == np.uint16 and probability[1, 1] == round(0.9 * 65535)
    assert cv2.imdecode(np.frombuffer(base64.b64decode(overlay), np.uint8), cv2.IMREAD_COLOR).shape == (10, 20, 3)
    stats_only, no_overlay = render(image, probabilities, {"MA": 0.5, "HE": 0.5}, frozenset())
    assert stats_only["MA"].mask_png is None and no_overlay is None and stats_only["MA"].area_pixels == 14
