"""Admission by expected wait and by image memory: the rules alone, then a burst on a real server."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

import service.worker
from service.admission import BYTES_PER_PIXEL_HELD, WORKING_BYTES_PER_PIXEL, Admission, Overloaded, working_bytes
from tests.service.helpers import make_settings, png, segment, serve_in_thread


def admission(infer_s: float = 2.0, workers: int = 1, timeout_s: float = 120.0, **caps) -> Admission:
    values = dict(max_requests=1000, max_image_bytes=10**12) | caps
    return Admission(workers=workers, timeout_s=timeout_s, recent_infer_s=lambda: infer_s, **values)


def fill(gate: Admission, requests: int, image_bytes: int = 0) -> list:
    """Admit ``requests`` requests; they hold their places until the returned list is released."""
    held = [gate.admit(image_bytes) for _ in range(requests)]
    for place in held:
        place.__enter__()
    return held


def test_requests_are_admitted_while_they_can_finish_within_the_timeout():
    gate = admission(infer_s=2.0, timeout_s=120.0)
    held: list = []
    held += fill(gate, 59)  # the 60th waits 59 x 2 s and runs 2 s: 120 s
    assert gate.expected_s() == pytest.approx(120.0)
    gate.check(0)
    held += fill(gate, 1)
    with pytest.raises(Overloaded) as refused:
        gate.check(0)
    assert refused.value.reason == "expected_wait" and "122 s" in refused.value.detail
    assert refused.value.retry_after_s == 2  # once one request has gone, the next fits


def test_the_estimate_shares_the_queue_among_the_workers():
    gate = admission(infer_s=3.0, workers=2, timeout_s=30.0)
    held: list = []
    held += fill(gate, 18)
    assert gate.expected_s() == pytest.approx(30.0)
    held += fill(gate, 1)  # the next would take (19 / 2 + 1) x 3 = 31.5 s
    with pytest.raises(Overloaded) as refused:
        gate.check(0)
    assert refused.value.retry_after_s == 2


def test_an_idle_worker_always_gets_a_try():
    gate = admission(infer_s=200.0, timeout_s=120.0)
    held: list = []
    gate.check(0)
    held += fill(gate, 1)
    with pytest.raises(Overloaded):
        gate.check(0)


def test_image_memory_has_a_hard_cap_whatever_the_wait():
    full_size = 4288 * 2848 * BYTES_PER_PIXEL_HELD
    gate = admission(infer_s=0.01, max_image_bytes=3 * full_size)
    held = fill(gate, 3, full_size)
    with pytest.raises(Overloaded) as refused:
        gate.check(full_size)
    assert refused.value.reason == "memory_full"
    with pytest.raises(Overloaded):
        gate.check(100 * 100 * BYTES_PER_PIXEL_HELD)
    held[0].__exit__(None, None, None)
    gate.check(full_size)
    assert gate.image_bytes == 2 * full_size


def test_the_working_scale_cost_is_counted_before_the_request_is_queued():
    photo = 4288 * 2848 * BYTES_PER_PIXEL_HELD
    working = working_bytes((976, 1200))
    assert working == 976 * 1200 * WORKING_BYTES_PER_PIXEL
    gate = admission(max_image_bytes=2 * photo + working)
    first = gate.admit(photo)
    first.__enter__().grow(working)
    with gate.admit(photo) as second:
        assert gate.image_bytes == 2 * photo + working
        with pytest.raises(Overloaded) as refused:
            second.grow(working)
        assert refused.value.reason == "memory_full"
    first.__exit__(None, None, None)
    assert gate.image_bytes == 0 and gate.in_flight == 0


def test_a_single_image_over_the_cap_is_still_served_alone():
    gate = admission(max_image_bytes=1000)
    held: list = []
    gate.check(10**9)
    held += fill(gate, 1, 10**9)
    with pytest.raises(Overloaded):
        gate.check(1)


def test_the_hard_cap_on_requests_holds_too():
    gate = admission(infer_s=0.001, max_requests=3)
    held: list = []
    held += fill(gate, 3)
    with pytest.raises(Overloaded) as refused:
        gate.check(0)
    assert refused.value.reason == "queue_full" and refused.value.retry_after_s >= 1


@pytest.mark.slow  # a server of its own, inference slowed on purpose
def test_a_burst_within_the_timeout_is_all_served(checkpoint, monkeypatch: pytest.MonkeyPatch):
    """The issue's case: 8 parallel requests to one worker, each ~0.3 s, well within the timeout: all 200."""
    real_predict = service.worker.predict_probabilities

    def slow_predict(model, image, settings, calibration=None, mapping=None):
        time.sleep(0.3)
        return real_predict(model, image, settings, calibration, mapping)

    monkeypatch.setattr(service.worker, "predict_probabilities", slow_predict)
    image = png(np.full((64, 96, 3), 120, np.uint8))
    with serve_in_thread(make_settings(checkpoint, queue_size=32)) as url, httpx.Client(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=8)
    ) as http:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: segment(http, image, outputs="none").status_code, range(8)))
        assert statuses == [200] * 8
        metrics = http.get("/metrics").text
        assert "redseg_expected_wait_seconds " in metrics and "redseg_image_memory_bytes 0.0" in metrics
