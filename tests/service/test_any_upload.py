"""Any upload, through decoding and inference, with the bundled fast model (it scales by the fundus disc)
in a process whose address space is limited: each answer is a 200 or a 4xx within seconds, never a 5xx,
and the process never dies. The same for ``redseg-segment``."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.checkpoint import FAST_CHECKPOINT
from tests.generated_images import any_image
from tests.service.helpers import ROOT, running_server

pytestmark = pytest.mark.slow

ADDRESS_SPACE_BYTES = 4 * 2**30
"""The child's address-space limit: a request that tried to grow past it would fail there (or kill it)."""
ANSWER_WITHIN_S = 30.0
"""'Within seconds' on two loaded CPU cores: a full-size photograph through the fast model takes about 1 s."""


def limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_BYTES, ADDRESS_SPACE_BYTES))


def encoded(image: np.ndarray, extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buffer.tobytes()


@pytest.fixture(scope="module")
def limited_server():
    env = {"REDSEG_CHECKPOINT": str(FAST_CHECKPOINT), "REDSEG_DEVICE": "cpu", "REDSEG_API_TOKEN": "",
           "REDSEG_TORCH_THREADS": "2"}
    with running_server(env, preexec_fn=limit_address_space) as (url, process):
        yield url, process


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(image=any_image(), extension=st.sampled_from([".png", ".jpg"]))
def test_any_upload_is_answered_200_or_4xx_and_the_server_lives(limited_server, image, extension):
    url, process = limited_server
    started = time.perf_counter()
    response = httpx.post(f"{url}/segment", files={"image": (f"x{extension}", encoded(image, extension))},
                          params={"outputs": "none"}, timeout=120)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 or 400 <= response.status_code < 500, (image.shape, response.text)
    assert elapsed < ANSWER_WITHIN_S, (image.shape, elapsed)
    assert process.poll() is None, "the server died"


def test_redseg_segment_goes_through_any_batch_within_the_limit(tmp_path: Path):
    images = {
        "one.png": np.full((1, 1, 3), 200, np.uint8),
        "five.png": np.full((5, 5, 3), 200, np.uint8),
        "flat8.jpg": np.full((8, 8, 3), 90, np.uint8),
        "strip.png": np.full((1, 3000, 3), 150, np.uint8),
        "dot-in-frame.png": cv2.circle(np.zeros((3000, 3000, 3), np.uint8), (1500, 1500), 30, (150, 60, 20), -1),
        "photo.jpg": cv2.cvtColor(cv2.imread(str(ROOT / "assets" / "IDRiD_05.jpg")), cv2.COLOR_BGR2RGB),
    }
    for name, image in images.items():
        (tmp_path / name).write_bytes(encoded(image, Path(name).suffix))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "model.cli", *(str(tmp_path / name) for name in images), "--out", str(out),
               "--checkpoint", str(FAST_CHECKPOINT), "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=limit_address_space,
                          cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    for name in ("one.png", "five.png", "flat8.jpg", "dot-in-frame.png"):
        assert f"{tmp_path / name}: the photograph is too small for the model" in done.stderr
    assert f"{tmp_path / 'strip.png'}: not a colour fundus photograph" in done.stderr
    assert "5 of 6 images failed" in done.stderr
    assert [line.split(":")[0] for line in done.stdout.splitlines()] == [str(tmp_path / "photo.jpg")]
