"""Admission control: let a request queue for the model only if it can finish in time and fit in memory.

A request is admitted when a worker is idle, or when the expected time to its answer
(the requests ahead of it, shared among the workers, times the recent inference time,
plus its own inference) is within the request timeout; and only when the memory it will hold fits under a hard
cap. Otherwise it gets 503 at once, with a Retry-After computed from the same estimate.

The memory is counted twice over a request's life: from the image's header before decoding
(``held_bytes``), then, once the photograph's working-scale size is known and before it is queued
for the model, the working-scale tensors and maps too (``working_bytes``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

BYTES_PER_PIXEL_HELD = 3 + 2 * 4 + 2
"""What a request holds per pixel at its peak: the RGB uint8 image, two float32
probability maps and two uint8 masks."""

WORKING_BYTES_PER_PIXEL = 320
"""What inference holds per pixel of the working-scale image at its peak: the normalised input and its
padded tiles, the network's activations, the blended maps (measured: about 300 for the full-width network
on a 1216x1216 working image, 150 for the quarter-width one)."""

DEFAULT_INFER_S = 1.0
"""The inference time assumed before any has been measured."""


class Overloaded(Exception):
    def __init__(self, reason: str, detail: str, retry_after_s: int):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after_s = retry_after_s


@dataclass
class Admission:
    workers: int
    timeout_s: float
    max_requests: int
    """A hard cap on requests in progress, whatever the estimate says."""
    max_image_bytes: int
    """A hard cap on the memory of the images of the requests in progress."""
    recent_infer_s: Callable[[], float] = lambda: DEFAULT_INFER_S
    """The recent inference time of one request (an average kept by the workers)."""
    in_flight: int = 0
    image_bytes: int = 0

    def expected_s(self) -> float:
        """Seconds until a request arriving now, behind those in progress, would be answered."""
        return (self.in_flight / self.workers + 1) * self.recent_infer_s()

    def retry_after_s(self) -> int:
        """Seconds until enough of the queue has gone for a new request to finish in time."""
        return max(1, math.ceil(self.expected_s() - self.timeout_s))

    def place_free_s(self) -> int:
        """Seconds until a request in progress is likely to finish and free its place."""
        return max(1, math.ceil(self.recent_infer_s() / self.workers))

    def check(self, image_bytes: int) -> None:
        if self.in_flight >= self.max_requests:
            raise Overloaded("queue_full", "the service is busy: too many requests in progress", self.place_free_s())
        self.check_memory(image_bytes)
        expected = self.expected_s()
        if self.in_flight >= self.workers and expected > self.timeout_s:  # an idle worker always gets a try
            raise Overloaded(
                "expected_wait",
                f"the service is busy: an answer would take about {expected:.0f} s, "
                f"past the {self.timeout_s:g} s request timeout",
                self.retry_after_s(),
            )

    def check_memory(self, extra_bytes: int, own_bytes: int = 0) -> None:
        """Raise Overloaded when ``extra_bytes`` more would pass the cap; a request that would hold the
        cap's memory alone (beside its own ``own_bytes``) always gets a try."""
        if self.image_bytes > own_bytes and self.image_bytes + extra_bytes > self.max_image_bytes:
            raise Overloaded(
                "memory_full", "the service is busy: too much image data in progress, retry shortly", self.place_free_s()
            )

    @contextmanager
    def admit(self, image_bytes: int) -> Iterator[Reservation]:
        """Hold a place (and ``image_bytes`` of the memory cap) for the request's whole life, or raise Overloaded."""
        self.check(image_bytes)
        self.in_flight += 1
        reservation = Reservation(self)
        try:
            reservation.grow(image_bytes)
            yield reservation
        finally:
            self.in_flight -= 1
            self.image_bytes -= reservation.bytes


@dataclass
class Reservation:
    """The memory an admitted request holds under the cap; it grows as its cost becomes known."""

    admission: Admission
    bytes: int = 0

    def grow(self, extra_bytes: int) -> None:
        """Hold ``extra_bytes`` more, or raise Overloaded (memory_full) when they would pass the cap."""
        self.admission.check_memory(extra_bytes, self.bytes)
        self.admission.image_bytes += extra_bytes
        self.bytes += extra_bytes


def held_bytes(pixels: int) -> int:
    """The memory a request holds for a photograph of ``pixels`` at its own size."""
    return pixels * BYTES_PER_PIXEL_HELD


def working_bytes(size: tuple[int, int]) -> int:
    """The memory inference holds for a working-scale image of ``size`` (h, w)."""
    return size[0] * size[1] * WORKING_BYTES_PER_PIXEL
