"""The inference worker under load and faults: overload, errors, a dying worker, clients that leave."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import service.worker
from tests.service.helpers import make_settings, png, segment, serve_in_thread

real_predict = service.worker.predict_probabilities


class Fatal(BaseException):
    """Not an Exception: it kills the worker thread."""

pytestmark = pytest.mark.slow  # a server started per test, its inference slowed on purpose


@pytest.fixture
def predict_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make inference slow (0.4 s; 2 s for width 61) and record the width of every image the worker runs."""
    calls: list[int] = []

    def slow_predict(model, image, settings, calibration=None, mapping=None):
        calls.append(image.shape[1])
        if image.shape[1] == 77:
            raise RuntimeError("injected failure")
        if image.shape[1] == 78:
            raise Fatal("injected worker death")
        time.sleep(2.0 if image.shape[1] == 61 else 0.4)  # 61: long enough for another client to give up
        return real_predict(model, image, settings, calibration, mapping)

    monkeypatch.setattr(service.worker, "predict_probabilities", slow_predict)
    return calls


def image_of_width(width: int) -> bytes:
    return png(np.full((64, width, 3), 120, np.uint8))  # 64: the tiny model enlarges it 4 times, its most


def test_full_queue_answers_503_at_once_and_every_request_is_answered(checkpoint, predict_calls):
    limits = httpx.Limits(max_connections=12)
    with serve_in_thread(make_settings(checkpoint, queue_size=1)) as url, httpx.Client(
        base_url=url, timeout=30, limits=limits
    ) as http:
        images = [image_of_width(60 + i % 4) for i in range(12)]

        def one(i: int) -> tuple[int, float, str | None]:
            started = time.perf_counter()
            response = segment(http, images[i], outputs="none")
            return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")

        started = time.perf_counter()
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(one, range(12)))
        elapsed = time.perf_counter() - started

        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 503} and len(results) == 12
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1
        rejected = [(seconds, retry) for status, seconds, retry in results if status == 503]
        assert all(retry is not None and int(retry) >= 1 for _, retry in rejected)
        accepted = [seconds for status, seconds, _ in results if status == 200]
        assert min(seconds for seconds, _ in rejected) < min(accepted)  # rejected without waiting for the model
        assert elapsed < 20
        assert segment(http, image_of_width(60), outputs="none").status_code == 200  # the slots were given back


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_inference_error_gives_500_with_an_error_id_and_the_service_goes_on(checkpoint, predict_calls, caplog):
    with serve_in_thread(make_settings(checkpoint)) as url, httpx.Client(base_url=url, timeout=30) as http:
        response = segment(http, image_of_width(77))
        assert response.status_code == 500
        detail = response.json()["detail"]
        assert "error id" in detail and "injected" not in detail
        error_id = detail.rsplit(" ", 1)[-1].rstrip(")")
        assert any(error_id in record.getMessage() for record in caplog.records)
        assert segment(http, image_of_width(60)).status_code == 200
        assert http.get("/readyz").status_code == 200


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_worker_shows_in_readyz_and_is_restarted(checkpoint, predict_calls):
    with serve_in_thread(make_settings(checkpoint)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert segment(http, image_of_width(78)).status_code == 500
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["workers"][0]["alive"] is False and "Fatal" in ready.json()["workers"][0]["error"]
        assert segment(http, image_of_width(60)).status_code == 503
        deadline = time.monotonic() + 15
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.1)
        assert http.get("/readyz").json()["workers"][0]["restarts"] == 1
        assert segment(http, image_of_width(60)).status_code == 200


def test_the_worker_skips_a_request_whose_client_left(checkpoint, predict_calls):
    with serve_in_thread(make_settings(checkpoint)) as url:
        first = threading.Thread(target=lambda: httpx.post(
            f"{url}/segment", files={"image": ("a.png", image_of_width(61), "image/png")}, timeout=30
        ))
        first.start()
        while 61 not in predict_calls:
            time.sleep(0.01)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while the worker is busy
            httpx.post(f"{url}/segment", files={"image": ("b.png", image_of_width(62), "image/png")}, timeout=1.0)
        first.join()
        time.sleep(0.6)
        assert 62 not in predict_calls
        metrics = httpx.get(f"{url}/metrics").text
        assert 'redseg_requests_rejected_total{reason="client_disconnected"} 1.0' in metrics


def test_a_request_past_its_timeout_gets_503_and_is_skipped(checkpoint, monkeypatch: pytest.MonkeyPatch):
    calls: list[int] = []

    def slow_for_width_63(model, image, settings, calibration=None, mapping=None):  # others run at full speed, so both requests are admitted
        calls.append(image.shape[1])
        if image.shape[1] == 63:
            time.sleep(5.0)
        return real_predict(model, image, settings, calibration, mapping)

    monkeypatch.setattr(service.worker, "predict_probabilities", slow_for_width_63)
    with serve_in_thread(make_settings(checkpoint, request_timeout_s=4.0)) as url:
        with httpx.Client(base_url=url, timeout=30) as http, ThreadPoolExecutor(2) as pool:
            assert segment(http, image_of_width(60)).status_code == 200  # a measured inference time
            slow = pool.submit(segment, http, image_of_width(63))
            deadline = time.monotonic() + 10
            while 63 not in calls:
                assert time.monotonic() < deadline, "the first request never reached the worker"
                time.sleep(0.01)
            late = segment(http, image_of_width(64))
            assert late.status_code == 503 and "timeout" in late.json()["detail"]
            assert int(late.headers["retry-after"]) >= 1
            assert slow.result().status_code == 503  # 5 s of inference is past 4 s too
            time.sleep(1.5)
            assert 64 not in calls


def test_not_ready_until_the_warm_up_has_run(checkpoint, monkeypatch: pytest.MonkeyPatch):
    gate = threading.Event()

    def gated_predict(model, image, settings, calibration=None, mapping=None):
        gate.wait(30)
        return real_predict(model, image, settings, calibration, mapping)

    monkeypatch.setattr(service.worker, "predict_probabilities", gated_predict)
    with serve_in_thread(make_settings(checkpoint), wait=False) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        deadline = time.monotonic() + 60
        while "model" not in (ready := http.get("/readyz")).json():  # the model loads after the server listens
            assert ready.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.05)
        assert ready.status_code == 503 and ready.json()["workers"][0]["warm"] is False
        assert ready.json()["reason"] == "warming up the model"
        busy = segment(http, image_of_width(60))
        assert busy.status_code == 503 and "Retry-After" in busy.headers
        gate.set()
        deadline = time.monotonic() + 15
        while http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ready = http.get("/readyz").json()
        assert ready["model"]["name"] == "redseg-test" and ready["model"]["device"] == "cpu"
        assert [w["device"] for w in ready["workers"]] == ["cpu"]
        assert segment(http, image_of_width(60)).status_code == 200
