"""The heap between requests: large arrays kept warm for the next request, and handed back to the OS after
requests end once the heap holds more free memory than the warm allowance."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

import service.memory as memory


def test_the_trim_loop_trims_once_requests_have_ended_and_none_is_in_progress(monkeypatch):
    trims = []
    monkeypatch.setattr(memory, "release_free_memory", lambda warm_bytes: trims.append(warm_bytes) or True)
    ended, in_flight = [0], [0]

    async def settle() -> None:
        await asyncio.sleep(0.1)  # ten intervals

    async def scenario() -> None:
        task = asyncio.create_task(memory.trim_after_requests(lambda: ended[0], lambda: in_flight[0], 123, interval_s=0.01))
        await settle()
        assert trims == []  # nothing ended: nothing to give back
        ended[0], in_flight[0] = 3, 2
        await settle()
        assert trims == []  # busy: the requests in hand keep the heap
        in_flight[0] = 0
        await settle()
        assert trims == [123]  # at rest: one trim, then none until another request ends
        ended[0] += 1
        await settle()
        task.cancel()

    if memory._libc is None:
        pytest.skip("not glibc: the loop returns at once")
    asyncio.run(scenario())
    assert trims == [123, 123]


HEAP_SCENARIO = """
import numpy as np, psutil
import service.memory as memory
assert memory.configure_heap()
rss = lambda: psutil.Process().memory_info().rss
block = np.ones(300 * 2**20, np.uint8)
held = rss()
del block
assert memory.free_heap_bytes() >= 300 * 2**20, "the freed block is not kept in the heap"
assert rss() > held - 50 * 2**20, "the freed block's pages were handed back at once"
assert not memory.release_free_memory(warm_bytes=2**40)
assert rss() > held - 50 * 2**20, "a heap within its warm allowance was trimmed"
assert memory.release_free_memory(warm_bytes=2**20)
assert rss() < held - 250 * 2**20, "the trim did not hand the block's pages back"
"""


@pytest.mark.skipif(memory.free_heap_bytes() is None, reason="mallopt, mallinfo2 and malloc_trim are glibc's (2.33 on)")
def test_freed_arrays_stay_warm_in_the_heap_until_it_holds_more_than_the_allowance():
    """In a process of its own: the heap's settings last for the rest of the process."""
    subprocess.run([sys.executable, "-c", HEAP_SCENARIO], check=True, timeout=60)


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
