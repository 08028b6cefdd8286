"""How the server's heap is kept between requests (glibc's malloc; elsewhere this does nothing).

A full-size request allocates a few hundred MB of short-lived arrays. By default glibc maps each large
array afresh from the OS and unmaps it when freed, so every request pays page faults on all of them:
about 0.9 s of a 4.2 s int8 request on the 2-core build machine, a virtual machine (``bench/heap.py``).
``configure_heap`` keeps them in the heap instead, so the next request reuses pages already resident.

Kept without bound, that memory would make RSS step up to the largest mix of requests the server has
seen and stay there. So once requests have ended and none is in progress, the heap is trimmed
(``malloc_trim``, all free memory handed back) if it holds more free memory than ``warm_bytes``: RSS
at rest stays within that much of what the work in hand needs, and a server answering one photograph
at a time keeps its heap warm.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("service.memory")

TRIM_INTERVAL_S = 1.0

M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
"""glibc's mallopt parameters: free memory at the heap's top before free() gives it back; how many
blocks may be mapped on their own; how many arenas may be made."""
NEVER = 2**31 - 1
"""The largest M_TRIM_THRESHOLD mallopt takes (an int): free() itself never trims."""
ARENAS = 2
"""Each thread that allocates gets its own arena by default (up to 8 per core): the worker, the PNG
encoders and the request threads would each keep their own free memory."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not all(hasattr(libc, name) for name in ("malloc_trim", "mallopt")):
        return None  # not glibc (musl, macOS)
    if hasattr(libc, "mallinfo2"):  # glibc 2.33 on
        libc.mallinfo2.restype = _MallInfo2
    return libc


_libc = _load_libc()


def configure_heap(arenas: int = ARENAS) -> bool:
    """From now on: at most ``arenas`` malloc arenas, large arrays kept in the heap when freed rather than
    unmapped, and no trimming but ``release_free_memory``'s. False where the C library is not glibc."""
    if _libc is None:
        return False
    settings = ((M_ARENA_MAX, arenas), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER))
    return all(bool(_libc.mallopt(parameter, value)) for parameter, value in settings)


def free_heap_bytes() -> int | None:
    """Free memory the heap holds, in all arenas; None where the C library cannot say (not glibc, or before 2.33)."""
    return _libc.mallinfo2().fordblks if hasattr(_libc, "mallinfo2") else None


def release_free_memory(warm_bytes: int = 0) -> bool:
    """Hand the heap's free pages back to the OS if it holds more than ``warm_bytes`` of them (or cannot say how
    much it holds: then every time, as before the allowance); True if it did."""
    if _libc is None:
        return False
    free = free_heap_bytes()
    return (free is None or free > warm_bytes) and bool(_libc.malloc_trim(0))


async def trim_after_requests(requests_ended: Callable[[], int], requests_in_flight: Callable[[], int], warm_bytes: int,
                              interval_s: float = TRIM_INTERVAL_S) -> None:
    """Forever: once per interval, if a request has ended since the last trim and none is in progress,
    ``release_free_memory(warm_bytes)`` in a thread. A busy server is not trimmed: the trim would hold the
    heap's lock against the requests in hand and leave the next one cold pages."""
    if _libc is None:
        log.info("not glibc's malloc: freed memory stays with the allocator, and each large array is mapped afresh")
        return
    seen = requests_ended()
    while True:
        await asyncio.sleep(interval_s)
        if requests_ended() != seen and not requests_in_flight():
            seen = requests_ended()
            await asyncio.to_thread(release_free_memory, warm_bytes)
