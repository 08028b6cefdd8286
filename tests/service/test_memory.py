"""Freed memory handed back to the OS: the trim loop runs after requests end, and only then."""

from __future__ import annotations

import asyncio
import platform

import pytest

import service.memory as memory
from service.admission import Admission


def test_a_request_ending_counts_whether_it_succeeded_or_failed():
    gate = Admission(workers=1, timeout_s=10.0, max_requests=4, max_image_bytes=100)
    with gate.admit(10):
        pass
    with pytest.raises(RuntimeError), gate.admit(10):
        raise RuntimeError("inference failed")
    assert gate.ended == 2 and gate.in_flight == 0 and gate.image_bytes == 0


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
