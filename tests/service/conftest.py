"""Fixtures: a tiny checkpoint, sample images, and the main uvicorn test server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import service  # noqa: F401  (first: sets OpenCV's limits before cv2 loads)

import cv2
import httpx
import numpy as np
import psutil
import pytest

from tests.service.helpers import (
    BODY_TIMEOUT_S,
    MAX_HEADER_BYTES,
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    SAMPLE,
    png,
    running_server,
    tiny_checkpoint,
)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def sample_bytes() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture(scope="session")
def small_rgb(sample_bytes: bytes) -> np.ndarray:
    """The sample photo shrunk to 120x80, RGB uint8."""
    bgr = cv2.imdecode(np.frombuffer(sample_bytes, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(cv2.resize(bgr, (120, 80), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="session")
def small_png(small_rgb: np.ndarray) -> bytes:
    return png(small_rgb)


@pytest.fixture(scope="session")
def server_process(checkpoint: Path) -> Iterator[tuple[str, psutil.Process]]:
    """The main test server, as `make serve` runs it, serving the tiny checkpoint with no token; and its process."""
    env = {
        "REDSEG_CHECKPOINT": str(checkpoint),
        "REDSEG_DEVICE": "cpu",
        "REDSEG_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
        "REDSEG_MAX_PIXELS": str(MAX_PIXELS),
        "REDSEG_QUEUE_SIZE": "16",
        "REDSEG_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "REDSEG_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "REDSEG_API_TOKEN": "",
    }
    with running_server(env) as (base_url, process):
        yield base_url, psutil.Process(process.pid)


@pytest.fixture(scope="session")
def server(server_process: tuple[str, psutil.Process]) -> str:
    return server_process[0]


@pytest.fixture
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as http:
        yield http
