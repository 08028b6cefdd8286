"""Handing freed heap memory back to the operating system after requests (glibc's ``malloc_trim``).

A full-size request allocates a few hundred MB of short-lived arrays. glibc keeps much of what is
freed in its arenas, so without a trim the process's RSS steps up to the largest mix of requests
it has seen and stays there. Trimming after requests keeps RSS near what is really in use.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("service.memory")

TRIM_INTERVAL_S = 1.0


def _load_malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None, None
    trim = getattr(libc, "malloc_trim", None)  # absent outside glibc (musl, macOS)
    return (libc, trim) if trim is not None else (None, None)


_libc, _malloc_trim = _load_malloc_trim()

M_ARENA_MAX = -8
"""glibc's mallopt parameter for the number of malloc arenas."""
ARENAS = 2
"""Each thread that allocates gets its own arena by default (up to 8 per core): the worker, the PNG
encoders and the request threads would each keep their own free memory."""


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Let at most ``arenas`` malloc arenas be made from now on (glibc only)."""
    return _libc is not None and bool(_libc.mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Return the heap's free pages to the OS; False where the C library cannot (not glibc)."""
    return _malloc_trim is not None and bool(_malloc_trim(0))


async def trim_after_requests(requests_ended: Callable[[], int], interval_s: float = TRIM_INTERVAL_S) -> None:
    """Forever: once per interval, trim (in a thread) if a request has ended since the last look."""
    if _malloc_trim is None:
        log.info("no malloc_trim in this C library: freed memory stays with the allocator")
        return
    seen = requests_ended()
    while True:
        await asyncio.sleep(interval_s)
        if (ended := requests_ended()) != seen:
            seen = ended
            await asyncio.to_thread(release_free_memory)
