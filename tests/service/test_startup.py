"""Start-up: the server listens at once and the model loads behind it (here a load held on purpose):
/healthz 200, /readyz and /segment 503 saying why until the model is ready; a failed load stops
redseg-serve with an error; a shutdown during the load waits for it and serves nothing. No OpenVINO
model is made here (the tests run on torch): the load only says it would make one."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest

import service.app
import service.startup
from model.backends import openvino_installed
from model.openvino_export import ir_key, ir_path
from service.app import StartupError
from service.serve import GracefulServer, build_server
from tests.service.helpers import free_port, make_settings, png, segment, serve_in_thread, tiny_checkpoint, wait_ready

real_load_pool = service.app.load_pool

MAKING_IR = "loading the model: making the OpenVINO int8 model for this checkpoint (first start)"


class HeldLoad:
    """``load_pool`` held until ``release()``, then the real one (or ``error`` raised)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.error: Exception | None = None
        self.pools: list = []

    def __call__(self, settings, metrics):
        assert self.released.wait(30), "the test never released the load"
        if self.error is not None:
            raise self.error
        self.pools.append(pool := real_load_pool(settings, metrics))
        return pool


@pytest.fixture
def held_load(monkeypatch: pytest.MonkeyPatch) -> Iterator[HeldLoad]:
    """The load held, and said to be making an OpenVINO int8 IR (none is made: the tests run on torch)."""
    held = HeldLoad()
    monkeypatch.setattr(service.app, "load_pool", held)
    monkeypatch.setattr(service.startup, "ir_to_make", lambda settings: "int8")
    yield held
    held.released.set()


@contextmanager
def graceful_server_in_thread(settings) -> Iterator[tuple[GracefulServer, str, threading.Thread]]:
    """``redseg-serve``'s server in a thread, listening (not waiting for the model)."""
    port = free_port()
    server = build_server("127.0.0.1", port, settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive())
        yield server, f"http://127.0.0.1:{port}", thread
    finally:
        server.should_exit = True
        thread.join(30)


def wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def photo() -> bytes:
    return png(np.full((64, 60, 3), 120, np.uint8))


def test_probes_and_segment_while_the_model_loads_then_ready(checkpoint: Path, held_load: HeldLoad):
    with serve_in_thread(make_settings(checkpoint), wait=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200 and http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "reason": MAKING_IR, "model": None, "workers": []}
        refused = segment(http, photo(), outputs="none")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "30"
        assert MAKING_IR in refused.json()["detail"]
        metrics = http.get("/metrics").text
        assert "redseg_ready 0.0" in metrics and 'redseg_requests_rejected_total{reason="not_ready"} 1.0' in metrics
        held_load.released.set()
        wait_ready(url, timeout_s=60)
        ready = http.get("/readyz").json()
        assert ready["ready"] is True and ready["reason"] is None and ready["model"]["name"] == "redseg-test"
        assert segment(http, photo(), outputs="none").status_code == 200
        assert "redseg_ready 1.0" in http.get("/metrics").text


def test_a_failed_load_stops_redseg_serve_with_an_error(checkpoint: Path, held_load: HeldLoad):
    held_load.error = StartupError("cannot start: checkpoint not found: /nowhere.safetensors")
    with graceful_server_in_thread(make_settings(checkpoint)) as (server, url, thread):
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # listening while the model loads
        held_load.released.set()
        thread.join(30)
        assert not thread.is_alive() and server.failed  # redseg-serve's main() then exits 1


def test_a_failed_load_under_another_server_fails_the_liveness_probe(checkpoint: Path, held_load: HeldLoad):
    held_load.error = RuntimeError("boom")
    with serve_in_thread(make_settings(checkpoint), wait=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        held_load.released.set()
        wait_for(lambda: http.get("/healthz").status_code == 503)
        assert http.get("/healthz").json() == {"status": "failed", "detail": "cannot start: RuntimeError: boom"}
        ready = http.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reason"] == "the model failed to load: cannot start: RuntimeError: boom"
        assert segment(http, photo()).status_code == 503


def test_a_shutdown_during_the_load_waits_for_it_and_serves_nothing(checkpoint: Path, held_load: HeldLoad):
    with graceful_server_in_thread(make_settings(checkpoint)) as (server, url, thread):
        app = server.config.app
        server.handle_exit(signal.SIGTERM, None)
        time.sleep(0.5)
        assert thread.is_alive()  # the load in hand cannot be interrupted: the process waits for it
        held_load.released.set()
        thread.join(30)
        assert not thread.is_alive() and not server.failed
        assert app.state.pool is None
        assert [worker.thread for worker in held_load.pools[0].workers] == [None]  # never started


@pytest.mark.skipif(not openvino_installed(), reason="needs openvino")
def test_the_load_says_when_it_must_make_an_openvino_model_first(tmp_path: Path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    settings = make_settings(checkpoint, backend="openvino-int8")
    assert service.startup.ir_to_make(settings) == "int8"
    ir = ir_path(checkpoint.with_name("tiny.openvino"), "int8", ir_key(checkpoint, "int8"))
    ir.parent.mkdir()
    ir.touch()
    ir.with_suffix(".bin").touch()  # as if made by an earlier start: only found, never read here
    assert service.startup.ir_to_make(settings) is None
    assert service.startup.ir_to_make(make_settings(checkpoint, backend="torch")) is None
    assert service.startup.ir_to_make(make_settings(tmp_path / "missing.safetensors", backend="openvino-int8")) is None


def test_a_ready_worker_logs_how_long_its_warm_up_took(checkpoint: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level("INFO", logger="service.worker")
    with serve_in_thread(make_settings(checkpoint)):
        pass
    ready = [record.getMessage() for record in caplog.records if "is ready" in record.getMessage()]
    assert ready and all("its warm-up, one working-scale image through the network, took" in line
                         for line in ready), ready
