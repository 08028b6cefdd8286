"""Helpers for the service tests: tiny checkpoints, images, and real uvicorn servers on loopback."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import service  # noqa: F401  (first: sets OpenCV's limits before cv2 loads)

import cv2
import httpx
import numpy as np
import torch
import uvicorn

from model import RedSeg, RedSegConfig, save_checkpoint
from service.app import create_app
from service.settings import Settings
from tests.processes import free_port, stop, wait_until  # noqa: F401  (free_port: re-exported for the service tests)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "IDRiD_05.jpg"
MAX_UPLOAD_BYTES = 2_000_000
MAX_PIXELS = 13_000_000
BODY_TIMEOUT_S = 3
MAX_HEADER_BYTES = 16384


def tiny_checkpoint(path: Path, seed: int = 0, exudates: bool = False) -> Path:
    """A random tiny network: MA and HE, and with ``exudates`` the EX and SE branches too."""
    torch.manual_seed(seed)
    branches = {"ex_stages": (3, 4, 5), "se_stages": (3, 4, 5)} if exudates else {}
    model = RedSeg(RedSegConfig(width=0.0625, working_long_side=256, **branches))
    return save_checkpoint(path, model, name="redseg-test", version="test")


def png(array: np.ndarray) -> bytes:
    """PNG bytes of a grey, RGB or RGBA array (colour given in RGB order)."""
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", array)
    assert ok
    return buffer.tobytes()


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming another size: its data ends long before such an image would."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def make_settings(checkpoint: Path, **overrides) -> Settings:
    """Settings of a threaded test server. Its tests send flat stand-in images (their widths mark them), so the
    fundus check is off unless asked for; the main test server keeps it on (test_bad_inputs.py)."""
    values = dict(
        checkpoint=checkpoint, device="cpu", max_upload_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS, queue_size=16,
        fundus_check=False,
    )
    return Settings(**(values | overrides))


def wait_ready(base_url: str, timeout_s: float = 240.0, alive: callable = lambda: True) -> None:
    wait_until(lambda: httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200, timeout_s,
               f"{base_url}/readyz", alive=alive)


@contextmanager
def serve_in_thread(settings: Settings, wait: bool = True) -> Iterator[str]:
    """A real uvicorn server for ``create_app(settings)`` on a loopback port, in a thread of this process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        if wait:
            wait_ready(base_url, alive=thread.is_alive)
        else:
            while not server.started and thread.is_alive():
                time.sleep(0.02)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def serve_subprocess(env: dict[str, str], port: int, output: int = subprocess.PIPE, **popen) -> subprocess.Popen:
    """``redseg-serve``, as `make serve` runs it, configured by REDSEG_* variables. A long-lived
    server should send its ``output`` (the access log) to DEVNULL: an unread pipe fills and blocks it."""
    command = [sys.executable, "-m", "service.serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        command, cwd=ROOT, env=os.environ | env, stdout=output, stderr=subprocess.STDOUT, text=True, **popen
    )


@contextmanager
def running_server(env: dict[str, str], timeout_s: float = 240.0, **popen) -> Iterator[tuple[str, subprocess.Popen]]:
    """``serve_subprocess`` on a free port, ready; its base URL and process. Stopped (then killed if need be) on exit."""
    port = free_port()
    process = serve_subprocess(env, port, output=subprocess.DEVNULL, **popen)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base_url, timeout_s, alive=lambda: process.poll() is None)
        yield base_url, process
    finally:
        stop(process)


def segment(http: httpx.Client, data: bytes, filename: str = "photo.png", content_type: str = "image/png", **params):
    return http.post("/segment", files={"image": (filename, data, content_type)}, params=params)
