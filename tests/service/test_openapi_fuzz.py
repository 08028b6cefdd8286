"""schemathesis against the served OpenAPI document: no 5xx, and every answer as documented.

Every built-in check runs, positive and negative data alike. The upload's encoding names
the image types it takes; schemathesis draws real images of those types (small ones, from
hypothesis) for them, so schema-valid requests must be served (200)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import schemathesis
from schemathesis.generation.modes import GenerationMode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dicom_files import photograph
from tests.service.helpers import SAMPLE, make_settings, serve_in_thread, tiny_checkpoint
from tests.dicom_files import to_bytes as dicom_bytes

EXAMPLES_PER_OPERATION = 25
cases_run: list[str] = []


SAMPLE_BGR = cv2.imread(str(SAMPLE))


def small_photograph(draw: st.DrawFn) -> np.ndarray:
    """The sample fundus photograph (BGR) at a drawn small size: the service takes only fundus photographs, and
    the tiny model enlarges one 4 times at most, so at least 64 pixels on the long side."""
    width = draw(st.integers(96, 160))
    height = round(width * SAMPLE_BGR.shape[0] / SAMPLE_BGR.shape[1])
    return cv2.resize(SAMPLE_BGR, (width, height), interpolation=cv2.INTER_AREA)


@st.composite
def small_images(draw: st.DrawFn, extension: str) -> bytes:
    image = small_photograph(draw)
    channels = draw(st.sampled_from([1, 3, 4] if extension != ".jpg" else [1, 3]))
    if channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    ok, buffer = cv2.imencode(extension, image)
    assert ok
    return buffer.tobytes()


@st.composite
def small_dicom_photographs(draw: st.DrawFn) -> bytes:
    rgb = cv2.cvtColor(small_photograph(draw), cv2.COLOR_BGR2RGB)
    return dicom_bytes(photograph(rgb, draw(st.sampled_from(["explicit", "jpeg", "rle"]))))


for media_type, extension in {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tiff", "image/bmp": ".bmp"}.items():
    schemathesis.openapi.media_type(media_type, small_images(extension))
schemathesis.openapi.media_type("application/dicom", small_dicom_photographs())


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
RUNS = [("GET /healthz", POSITIVE), ("GET /readyz", POSITIVE), ("GET /metrics", POSITIVE),
        ("POST /segment", POSITIVE), ("POST /segment", NEGATIVE)]
"""Negative data only where there are parameters to get wrong."""


@pytest.fixture(scope="module", params=["two lesions", "four lesions"])
def api_schema(request: pytest.FixtureRequest, server: str, tmp_path_factory: pytest.TempPathFactory):
    """The main test server's (a two-lesion model), and a four-lesion model's: each documents its own lesions."""
    if request.param == "two lesions":
        yield schemathesis.openapi.from_url(f"{server}/openapi.json")
        return
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("four") / "four.safetensors", exudates=True)
    with serve_in_thread(make_settings(checkpoint, fundus_check=True)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.fixture(scope="module", autouse=True)
def report_cases_run():
    """The count for the README's reliability figures (shown with -s)."""
    yield
    print(f"\nschemathesis cases run: {len(cases_run)}")


@pytest.mark.parametrize("label, mode", RUNS, ids=[f"{label} {mode}" for label, mode in RUNS])
def test_every_answer_matches_the_schema(api_schema, label: str, mode: GenerationMode):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the OpenAPI document"

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def call(case):
        cases_run.append(label)
        case.call_and_validate(timeout=60)

    call()
