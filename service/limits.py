"""ASGI middleware that bounds a request body in bytes and in time while it streams in.

A body over the byte limit gets 413. Clients that send the whole body before reading
the answer (urllib, requests: no ``Expect: 100-continue``) would see a connection reset
if the server closed on unread data, so the rest of the body is read and thrown away
first, up to a bound in bytes and seconds (nginx's "lingering close"), one chunk at a
time. A body that takes longer than the time limit to arrive (a slow drip) gets 408.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import send_error


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int
    """Largest body accepted."""
    timeout_s: float
    """Longest the whole body may take to arrive."""
    drain_bytes: int
    """Most bytes of an oversized body read and discarded before answering 413."""
    drain_s: float
    """Longest spent discarding an oversized body."""


def awaits_continue(scope: Scope) -> bool:
    """The client sent ``Expect: 100-continue``: it sends no body until told to."""
    return "100-continue" in Headers(scope=scope).get("expect", "").lower()


async def discard_unread_body(scope: Scope, receive: Receive, limits: BodyLimits, declared: int | None = None) -> None:
    """Before answering a request whose body has not been read: drop the body, unless the client
    waits for 100 Continue (it has sent nothing yet, and the answer can go at once)."""
    if not awaits_continue(scope):
        await discard_body(receive, limits, declared)


async def discard_body(receive: Receive, limits: BodyLimits, declared: int | None = None) -> None:
    """Read and drop what is left of a body that will not be used, within the drain bounds,
    so that a client still sending it can read the answer."""
    if declared is not None and declared > limits.drain_bytes:
        return  # more than we are willing to read: the client may see a reset
    deadline = time.monotonic() + limits.drain_s
    discarded = 0
    while discarded <= limits.drain_bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), remaining)
        except asyncio.TimeoutError:
            return
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit (before reading any of it) and for a
    body (chunked or not) that grows past it; 408 for a body slower than the time limit. The
    body is never held in full, nor is an oversized one."""

    def __init__(self, app: ASGIApp, limits: BodyLimits, on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.limits = limits
        self.on_reject = on_reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and not declared.strip().isdigit():
            await self._reject(send, 400, "bad_request", "invalid Content-Length header")
            return
        if declared is not None and int(declared) > self.limits.max_bytes:
            await discard_unread_body(scope, receive, self.limits, int(declared))
            await self._reject(send, 413, "too_large", self._too_large())
            return
        body = _BodyReader(receive, self.limits)
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, body.receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await discard_body(receive, self.limits)
                await self._reject(send, 413, "too_large", self._too_large())
        except BodyTooSlow:
            if not response_started:
                await self._reject(send, 408, "body_timeout", f"the request body took longer than {self.limits.timeout_s:g} s to arrive")

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self.limits.max_bytes} bytes"

    async def _reject(self, send: Send, status: int, reason: str, detail: str) -> None:
        self.on_reject(reason)
        await send_error(send, status, detail)


class _BodyReader:
    """The app's ``receive``: counts the body's bytes and bounds the time until its last chunk.
    After the body has ended, messages (a disconnect) pass through without a deadline."""

    def __init__(self, receive: Receive, limits: BodyLimits):
        self._receive = receive
        self._limits = limits
        self._received = 0
        self._deadline = time.monotonic() + limits.timeout_s
        self._ended = False

    async def receive(self) -> Message:
        if self._ended:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, self._deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise BodyTooSlow from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self._limits.max_bytes:
                raise BodyTooLarge
            self._ended = not message.get("more_body", False)
        return message
