"""Turning probabilities into the response's results, and the outputs parameter."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from model.config import ALL_LESIONS, RED_LESIONS
from model.screening.masks import lesion_masks
from service.rendering import Outputs, outputs_pattern, parse_outputs, render
from service.errors import ServiceError


@pytest.mark.parametrize(
    "value, images, lesions",
    [("none", set(), None), ("", set(), None), ("masks", {"masks"}, None), ("Masks, overlay", {"masks", "overlay"}, None),
     ("masks,probabilities,overlay", {"masks", "probabilities", "overlay"}, None),
     ("masks,probabilities,MA,he", {"masks", "probabilities"}, {"MA", "HE"}), ("se", set(), {"SE"}),
     ("none, EX", set(), {"EX"}), ("overlay,ma,ma", {"overlay"}, {"MA"})],
)
def test_parse_outputs(value: str, images: set, lesions: set | None):
    outputs = parse_outputs(value, ALL_LESIONS)
    assert outputs.images == images and outputs.lesions == lesions
    assert re.fullmatch(outputs_pattern(ALL_LESIONS), value)


@pytest.mark.parametrize(
    "value, message",
    [("heatmap", "unknown outputs ['heatmap']"), ("masks,heatmap", "unknown outputs ['heatmap']"),
     ("none,masks", "none cannot be combined"), ("masks,SE", "does not segment SE (soft exudates); it segments MA, HE"),
     ("ex", "does not segment EX (hard exudates)"), ("masks probabilities", "unknown outputs")],
)
def test_unknown_outputs_are_422(value: str, message: str):
    with pytest.raises(ServiceError) as error:
        parse_outputs(value, RED_LESIONS)
    assert error.value.status == 422 and message in error.value.detail
    assert not re.fullmatch(outputs_pattern(RED_LESIONS), value)


def test_render_thresholds_counts_and_encodes():
    probabilities = np.zeros((2, 10, 20), np.float32)
    probabilities[0, 1:3, 1:3] = 0.9
    probabilities[0, 6:8, 10:15] = 0.6
    probabilities[1, 5, 5] = 0.3
    image = np.zeros((10, 20, 3), np.uint8)
    thresholds = {"MA": 0.5, "HE": 0.25}
    rendered = render(image, lesion_masks(probabilities, thresholds), Outputs(frozenset({"masks", "probabilities", "overlay"})))
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
    stats_only = render(image, lesion_masks(probabilities, {"MA": 0.5, "HE": 0.5}), Outputs(frozenset()))
    assert stats_only.files == {} and stats_only.lesions["MA"].area_pixels == 14


def test_render_makes_the_pngs_of_the_lesions_asked_for_and_the_statistics_of_all():
    probabilities = np.zeros((4, 10, 20), np.float32)
    probabilities[2, 2:4, 2:6] = 0.9  # EX
    probabilities[3, 7, 7] = 0.8  # SE
    image = np.full((10, 20, 3), 100, np.uint8)
    masks = lesion_masks(probabilities, dict.fromkeys(ALL_LESIONS, 0.5))
    everything = render(image, masks, parse_outputs("masks,probabilities,overlay", ALL_LESIONS))
    assert sorted(everything.files) == sorted(
        [f"{lesion}_{kind}.png" for lesion in ALL_LESIONS for kind in ("mask", "probability")] + ["overlay.png"]
    )
    assert (everything.lesions["EX"].area_pixels, everything.lesions["SE"].area_pixels) == (8, 1)
    red = render(image, masks, parse_outputs("masks,overlay,MA,HE", ALL_LESIONS))
    assert sorted(red.files) == ["HE_mask.png", "MA_mask.png", "overlay.png"]
    assert (decode(red.files["overlay.png"]) == 100).all()  # no EX or SE drawn
    assert list(red.lesions) == list(ALL_LESIONS)  # statistics of every lesion, for the metrics
    assert parse_outputs("MA,HE", ALL_LESIONS).pick(red.lesions).keys() == {"MA", "HE"}


def decode(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
