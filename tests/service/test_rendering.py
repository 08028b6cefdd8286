"""Turning probabilities into the response's results, and the outputs parameter."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.screening.masks import lesion_masks
from service.rendering import parse_outputs, render
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
    thresholds = {"MA": 0.5, "HE": 0.25}
    rendered = render(image, lesion_masks(probabilities, thresholds), frozenset({"masks", "probabilities", "overlay"}))
    lesions = rendered.lesions
    assert (lesions["MA"].area_pixels, lesions["MA"].components) == (14, 2)
    assert (lesions["HE"].area_pixels, lesions["HE"].components, lesions["HE"].threshold) == (1, 1, 0.25)
    assert lesions["MA"].area_fraction == 14 / 200
    assert sorted(rendered.files) == sorted(
        ["MA_mask.png", "HE_mask.png", "MA_probability.png", "HE_probability.png", "overlay.png"]
    )
    probability = decode(rendered.files["MA_probability.png"])
    assert probability.dtype == np.uint16 and abs(int(probability[1, 1]) - 0.9 * 65535) <= 0.5
    mask = decode(rendered.files["HE_mask.png"])
    assert mask.dtype == np.uint8 and mask[5, 5] == 255 and mask.sum() == 255
    assert decode(rendered.files["overlay.png"]).shape == (10, 20, 3)
    stats_only = render(image, lesion_masks(probabilities, {"MA": 0.5, "HE": 0.5}), frozenset())
    assert stats_only.files == {} and stats_only.lesions["MA"].area_pixels == 14


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
