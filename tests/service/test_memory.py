"""Freed memory handed back to the OS: the trim loop runs after requests end, and only then."""

from __future__ import annotations

import asyncio
import platform

import pytest

import service.memory as memory


def test_the_trim_loop_trims_once_per_interval_in_which_requests_ended(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)
    ended = [0]

    async def scenario() -> None:
        task = asyncio.create_task(memory.trim_after_requests(lambda: ended[0], interval_s=0.01))
        await asyncio.sleep(0.05)
        assert trims == []  # nothing ended: nothing to give back
        ended[0] += 3
        for _ in range(100):
            await asyncio.sleep(0.01)
            if trims:
                break
        await asyncio.sleep(0.05)
        task.cancel()

    if memory._malloc_trim is None:
        pytest.skip("not glibc: the loop returns at once")
    asyncio.run(scenario())
    assert trims == [1]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim and mallopt are glibc's")
def test_glibc_trims_and_limits_arenas():
    assert memory.limit_arenas(memory.ARENAS)
    memory.release_free_memory()  # returns whether memory was released: either is fine


def test_a_request_counts_as_finished_once_its_answer_is_sent(checkpoint):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from tests.service.helpers import make_settings

    app = create_app(make_settings(checkpoint))
    with TestClient(app) as http:
        assert http.get("/healthz").status_code == 200  # probes do not count
        assert app.state.drain.finished == 0
        assert http.post("/segment", files={"image": ("x.txt", b"not an image", "text/plain")}).status_code in (400, 415, 503)
        assert app.state.drain.finished == 1 and app.state.drain.in_flight == 0
