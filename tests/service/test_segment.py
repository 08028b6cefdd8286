"""POST /segment on a real uvicorn server: the response's content, options and determinism."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import cv2
import httpx
import numpy as np
import pytest

from model.config import LESIONS
from tests.service.helpers import segment


def decode_png(b64: str) -> np.ndarray:
    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None
    return image


@pytest.mark.slow  # the full-size sample photograph
def test_real_idrid_photo_gives_full_size_masks_and_probabilities(client: httpx.Client, sample_bytes: bytes):
    response = segment(client, sample_bytes, "IDRiD_05.jpg", "image/jpeg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": 4288, "height": 2848}
    assert body["model"]["name"] == "redseg-test" and len(body["model"]["sha256"]) == 64
    assert body["model"]["device"] == "cpu"
    assert body["overlay_png"] is None
    for lesion in LESIONS:
        result = body["lesions"][lesion]
        mask = decode_png(result["mask_png"])
        assert mask.shape == (2848, 4288) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert result["area_pixels"] == int((mask == 255).sum())
        assert abs(result["area_fraction"] - result["area_pixels"] / mask.size) < 1e-9
        probability = decode_png(result["probability_png"])
        assert probability.shape == (2848, 4288) and probability.dtype == np.uint16
        np.testing.assert_array_equal(probability / 65535.0 >= result["threshold"], mask == 255)
    timings = body["timings"]
    # decoding, the queue, the forward pass and encoding follow one another inside the request
    stages = timings["decode_s"] + timings["queue_wait_s"] + timings["infer_s"] + timings["encode_s"]
    assert stages <= timings["total_s"] + 1e-6
    assert min(timings["decode_s"], timings["infer_s"], timings["encode_s"]) > 0 and timings["queue_wait_s"] >= 0


def test_stats_only_and_overlay(client: httpx.Client, small_png: bytes):
    stats = segment(client, small_png, outputs="none").json()
    for lesion in LESIONS:
        assert stats["lesions"][lesion]["mask_png"] is None and stats["lesions"][lesion]["probability_png"] is None
    assert stats["overlay_png"] is None
    both = segment(client, small_png, outputs="overlay,masks").json()
    overlay = decode_png(both["overlay_png"])
    assert overlay.shape == (80, 120, 3)
    assert both["lesions"]["MA"]["mask_png"] is not None and both["lesions"]["MA"]["probability_png"] is None


def test_thresholds_change_the_masks(client: httpx.Client, small_png: bytes):
    everything = segment(client, small_png, threshold_ma=0.0, threshold_he=0.0, outputs="none").json()
    nothing = segment(client, small_png, threshold_ma=1.0, threshold_he=1.0, outputs="probabilities").json()
    for lesion in LESIONS:
        assert everything["lesions"][lesion]["threshold"] == 0.0
        assert everything["lesions"][lesion]["area_pixels"] == 120 * 80
        assert everything["lesions"][lesion]["components"] == 1
        # threshold 1: only pixels whose saved probability is exactly 1; the test network reaches none
        assert decode_png(nothing["lesions"][lesion]["probability_png"]).max() < 65535
        assert (nothing["lesions"][lesion]["area_pixels"], nothing["lesions"][lesion]["components"]) == (0, 0)
    default = segment(client, small_png, outputs="none").json()
    assert default["lesions"]["MA"]["threshold"] == 0.5


def _essentials(body: dict) -> dict:
    return {
        lesion: (r["area_pixels"], r["components"], r["mask_png"], r["probability_png"])
        for lesion, r in body["lesions"].items()
    }


def test_parallel_requests_match_sequential_ones(server: str, small_rgb: np.ndarray):
    from tests.service.helpers import png

    images = [png(np.ascontiguousarray(np.roll(small_rgb, shift, axis=1))) for shift in range(0, 80, 10)]
    with httpx.Client(base_url=server, timeout=60) as http:
        sequential = [_essentials(segment(http, image).json()) for image in images]

    def one(image: bytes) -> dict:
        with httpx.Client(base_url=server, timeout=60) as http:
            response = segment(http, image)
            assert response.status_code == 200, response.text
            return _essentials(response.json())

    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(one, images))
    assert parallel == sequential
    assert len({str(result) for result in sequential}) > 1  # the images differ, and so do their answers
