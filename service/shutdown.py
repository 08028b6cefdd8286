"""Graceful shutdown: stop taking work, let the work in hand finish within a grace period, then stop.

``Drain.run`` is started by the server on SIGTERM (``service.serve``). From then on
``/readyz`` answers 503 (load balancers stop sending) and every new request, other than
the probes and /metrics, gets 503 at once; requests already in progress may finish until
the grace period ends, and those still running then get 503. Then the server exits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import send_error
from service.limits import BodyLimits, discard_unread_body

log = logging.getLogger("service")

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
RETRY_AFTER_S = 5
"""A replacement (another replica, or this one restarted) is expected within seconds."""


class Drain:
    """The shutdown state shared by the server, which starts it, and the app, which obeys it."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0
        self.finished = 0
        """Requests (other than probes and /metrics) whose answer has been sent or that failed: it only grows."""
        self.expired = asyncio.Event()
        self.on_expire: list[Callable[[], None]] = []

    async def run(self, grace_s: float, poll_s: float = 0.05) -> float:
        """Refuse new work, wait for the work in hand (at most ``grace_s``), and return the seconds it took."""
        started = time.monotonic()
        self.draining = True
        log.info("shutting down: %d request(s) in progress, %.0f s grace period", self.in_flight, grace_s)
        while self.in_flight and time.monotonic() - started < grace_s:
            await asyncio.sleep(poll_s)
        if self.in_flight:
            log.warning("grace period over: %d request(s) still in progress get 503", self.in_flight)
            for callback in self.on_expire:
                callback()
            self.expired.set()
            while self.in_flight:
                await asyncio.sleep(poll_s)
        return time.monotonic() - started


class DrainMiddleware:
    """503 for new requests while draining; 503 for the requests that outlive the grace period."""

    def __init__(
        self, app: ASGIApp, drain: Drain, limits: BodyLimits, on_reject: Callable[[str], None] | None = None
    ):
        self.app = app
        self.drain = drain
        self.limits = limits
        self.on_reject = on_reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await discard_unread_body(scope, receive, self.limits)  # so that a client still sending can read the 503
            await self._unavailable(send, "the server is shutting down: retry on another instance")
            return
        self.drain.in_flight += 1
        try:
            await self._run_until_expired(scope, receive, send)
        finally:
            self.drain.in_flight -= 1
            self.drain.finished += 1

    async def _run_until_expired(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        request = asyncio.ensure_future(self.app(scope, receive, tracking_send))
        expired = asyncio.ensure_future(self.drain.expired.wait())
        try:
            await asyncio.wait({request, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            expired.cancel()
        if request.done() or started:
            await request  # finished, or its answer is already on its way
            return
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        await self._unavailable(send, "the server shut down before this request finished: retry")

    async def _unavailable(self, send: Send, detail: str) -> None:
        self.on_reject("shutting_down")
        await send_error(send, 503, detail, {"Retry-After": str(RETRY_AFTER_S)})
