"""POST /segment follows the served model's lesions: a four-lesion model (MA, HE, EX, SE) answers all four,
``outputs`` picks among them, and a two-lesion model refuses the exudates."""

from __future__ import annotations

import base64
import re
import zipfile
from collections.abc import Iterator
from io import BytesIO

import cv2
import httpx
import numpy as np
import pytest

from model.config import ALL_LESIONS, LESION_NAMES, RED_LESIONS
from model.screening.overlay import LESION_COLOURS
from service.routes.pages import VIEWER_DIR
from tests.service.helpers import make_settings, segment, serve_in_thread, tiny_checkpoint
from tests.service.test_metrics import samples, value


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server of the tiny four-lesion checkpoint."""
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("four") / "four.safetensors", exudates=True)
    with serve_in_thread(make_settings(checkpoint)) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        yield http


def decode_png(b64: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_UNCHANGED)


def test_the_default_answer_holds_every_lesion_of_the_model(four: httpx.Client, small_png: bytes):
    response = segment(four, small_png)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body["lesions"]) == list(ALL_LESIONS) and list(body["screening"]["lesions"]) == list(ALL_LESIONS)
    for lesion in ALL_LESIONS:
        result = body["lesions"][lesion]
        mask, probability = decode_png(result["mask_png"]), decode_png(result["probability_png"])
        assert mask.shape == probability.shape == (80, 120) and probability.dtype == np.uint16
        np.testing.assert_array_equal(probability / 65535.0 >= result["threshold"], mask == 255)


def test_outputs_naming_the_red_lesions_answers_only_them(four: httpx.Client, small_png: bytes):
    body = segment(four, small_png, outputs="masks,probabilities,MA,HE").json()
    assert list(body["lesions"]) == list(RED_LESIONS) and list(body["screening"]["lesions"]) == list(RED_LESIONS)
    assert all(result["mask_png"] and result["probability_png"] for result in body["lesions"].values())
    stats_only = segment(four, small_png, outputs="ex").json()
    assert list(stats_only["lesions"]) == ["EX"] and stats_only["lesions"]["EX"]["mask_png"] is None
    archive = zipfile.ZipFile(BytesIO(four.post(
        "/segment", files={"image": ("photo.png", small_png, "image/png")}, params={"outputs": "masks,SE,overlay"},
        headers={"Accept": "application/zip"},
    ).content))
    assert sorted(archive.namelist()) == ["SE_mask.png", "overlay.png", "result.json"]


def test_exudate_thresholds_and_overlay(four: httpx.Client, small_png: bytes, small_rgb: np.ndarray):
    nothing = {"threshold_ma": 1, "threshold_he": 1, "threshold_ex": 1, "threshold_se": 1}
    body = segment(four, small_png, outputs="overlay", **nothing | {"threshold_ex": 0}).json()
    assert body["lesions"]["EX"]["threshold"] == 0 and body["lesions"]["EX"]["area_pixels"] == 120 * 80
    assert body["lesions"]["SE"]["area_pixels"] == 0
    assert (cv2.cvtColor(decode_png(body["overlay_png"]), cv2.COLOR_BGR2RGB) != small_rgb).any(axis=2).all()
    clean = segment(four, small_png, outputs="overlay", **nothing).json()
    np.testing.assert_array_equal(cv2.cvtColor(decode_png(clean["overlay_png"]), cv2.COLOR_BGR2RGB), small_rgb)


def test_metrics_count_every_lesion_of_the_model(four: httpx.Client, small_png: bytes):
    before = samples(four)
    assert segment(four, small_png, outputs="none,MA,HE").status_code == 200
    after = samples(four)
    for lesion in ALL_LESIONS:  # the lesions answered or not: monitoring does not hang on what clients ask
        for metric in ("redseg_lesion_area_fraction_count", "redseg_lesion_components_count"):
            assert value(after, metric, lesion=lesion) - value(before, metric, lesion=lesion) == 1


def test_the_openapi_document_names_the_served_lesions(four: httpx.Client, client: httpx.Client):
    def parameters(http: httpx.Client) -> dict:
        operation = http.get("/openapi.json").json()["paths"]["/segment"]["post"]
        return {parameter["name"]: parameter for parameter in operation["parameters"]}

    assert {"threshold_ex", "threshold_se"} <= set(parameters(four))
    assert "EX, SE" in parameters(four)["outputs"]["description"]
    two = parameters(client)
    assert "threshold_ma" in two and not {"threshold_ex", "threshold_se"} & set(two)
    assert "EX" not in two["outputs"]["description"] and "[eE][xX]" not in two["outputs"]["schema"]["pattern"]


@pytest.mark.parametrize(
    "params, parameter",
    [({"outputs": "masks,SE"}, "outputs"), ({"outputs": "ex"}, "outputs"), ({"threshold_se": 0.5}, "threshold_se")],
)
def test_a_two_lesion_model_refuses_the_exudates(client: httpx.Client, small_png: bytes, params: dict, parameter: str):
    response = segment(client, small_png, **params)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{parameter}: the served model does not segment ")
    assert response.json()["detail"].endswith("it segments MA, HE")


def test_a_two_lesion_model_has_no_exudate_metrics(client: httpx.Client):
    lesions = {dict(labels).get("lesion") for name, labels in samples(client) if name.startswith("redseg_lesion_")}
    assert lesions == set(RED_LESIONS)


def test_the_viewer_names_and_colours_the_lesions_as_the_overlay_does():
    script = (VIEWER_DIR / "viewer.js").read_text()
    found = re.findall(r'(\w+): \{ name: "([^"]+)", colour: \[(\d+), (\d+), (\d+)\] \}', script)
    assert {lesion: (name, tuple(map(int, rgb))) for lesion, name, *rgb in found} == {
        lesion: (LESION_NAMES[lesion], LESION_COLOURS[lesion]) for lesion in ALL_LESIONS
    }
