"""Graceful shutdown with real requests in flight: they finish (or get 503 once the grace period
is over), new ones get 503 at once, /readyz goes 503, and the server exits cleanly."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

import service.worker
from service.serve import GracefulServer, build_server
from tests.service.helpers import free_port, make_settings, png, segment, serve_subprocess, wait_ready

real_predict = service.worker.predict_probabilities

pytestmark = pytest.mark.slow  # a server started per test, and requests held in flight on purpose


@pytest.fixture
def slow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Inference of images 50 to 59 pixels wide takes (width - 50) / 2 s more; records every width run."""
    calls: list[int] = []

    def slow_predict(model, image, settings, calibration=None, mapping=None):
        calls.append(image.shape[1])
        if 50 <= image.shape[1] < 60:
            time.sleep((image.shape[1] - 50) / 2)
        return real_predict(model, image, settings, calibration, mapping)

    monkeypatch.setattr(service.worker, "predict_probabilities", slow_predict)
    return calls


def image_of_width(width: int) -> bytes:
    return png(np.full((64, width, 3), 120, np.uint8))  # 64: the tiny model enlarges it 4 times, its most


@contextmanager
def graceful_server_in_thread(checkpoint: Path, grace_s: float) -> Iterator[tuple[GracefulServer, str, threading.Thread]]:
    port = free_port()
    server = build_server("127.0.0.1", port, make_settings(checkpoint, shutdown_grace_s=grace_s))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=thread.is_alive)
        yield server, url, thread
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(condition, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def start_requests(http: httpx.Client, pool: ThreadPoolExecutor, widths: list[int]) -> list[Future]:
    return [pool.submit(segment, http, image_of_width(width), outputs="none") for width in widths]


def test_in_flight_requests_finish_and_new_ones_get_503_at_once(checkpoint: Path, slow_calls: list[int]):
    with graceful_server_in_thread(checkpoint, grace_s=20) as (server, url, thread), httpx.Client(
        base_url=url, timeout=30
    ) as http, ThreadPoolExecutor(3) as pool:
        in_flight = start_requests(http, pool, [52, 52, 52])  # 1 s each, one worker: 3 s in all
        wait_for(lambda: server.drain.in_flight == 3)
        server.handle_exit(signal.SIGTERM, None)
        with httpx.Client(base_url=url, timeout=5) as other:
            assert other.get("/readyz").status_code == 503
            refused = segment(other, image_of_width(60))
            assert refused.status_code == 503 and "shutting down" in refused.json()["detail"]
            assert int(refused.headers["retry-after"]) >= 1
            assert other.get("/healthz").status_code == 200
        assert [future.result().status_code for future in in_flight] == [200, 200, 200]
        thread.join(30)
        assert not thread.is_alive()


def test_requests_past_the_grace_period_get_503_and_queued_ones_never_run(checkpoint: Path, slow_calls: list[int]):
    with graceful_server_in_thread(checkpoint, grace_s=0.5) as (server, url, thread), httpx.Client(
        base_url=url, timeout=30
    ) as http, ThreadPoolExecutor(2) as pool:
        running = start_requests(http, pool, [54])  # 2 s of inference
        wait_for(lambda: 54 in slow_calls)
        queued = start_requests(http, pool, [53])
        wait_for(lambda: server.drain.in_flight == 2)
        server.handle_exit(signal.SIGTERM, None)
        for future in running + queued:
            answer = future.result()
            assert answer.status_code == 503 and "shut down before this request finished" in answer.json()["detail"]
        thread.join(30)
        assert not thread.is_alive()
        assert 53 not in slow_calls


def test_sigterm_with_full_size_requests_in_flight(checkpoint: Path, sample_bytes: bytes):
    port = free_port()
    process = serve_subprocess({"REDSEG_CHECKPOINT": str(checkpoint), "REDSEG_DEVICE": "cpu", "REDSEG_API_TOKEN": ""}, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, alive=lambda: process.poll() is None)
        with httpx.Client(base_url=url, timeout=60) as http, ThreadPoolExecutor(3) as pool:
            photos = [pool.submit(segment, http, sample_bytes, "photo.jpg", "image/jpeg", outputs="none") for _ in range(3)]
            wait_for(lambda: "redseg_requests_in_flight 3.0" in http.get("/metrics").text, timeout_s=30)
            signalled = time.monotonic()
            process.send_signal(signal.SIGTERM)
            assert http.get("/readyz").status_code == 503
            assert [photo.result().status_code for photo in photos] == [200, 200, 200]
        output, _ = process.communicate(timeout=30)
        print(f"SIGTERM to exit with 3 full-size requests in flight: {time.monotonic() - signalled:.1f} s")
        assert process.returncode == 0, output
        assert "SIGTERM received" in output and "drained in" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
