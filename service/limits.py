"""ASGI middleware that stops a request body at a byte limit while it streams in."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit (before reading any of it), and for a
    body (chunked or not) that grows past the limit, as soon as it does; the body is never
    held in full."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, on_reject: Callable[[str], None] | None = None):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_reject = on_reject or (lambda reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._reject(send, 400, "bad_request", "invalid Content-Length header")
                return
            if int(declared) > self.max_body_bytes:
                await self._reject(send, 413, "too_large", self._too_large())
                return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(send, 413, "too_large", self._too_large())

    def _too_large(self) -> str:
        return f"the request body is larger than the limit of {self.max_body_bytes} bytes"

    async def _reject(self, send: Send, status: int, reason: str, detail: str) -> None:
        self.on_reject(reason)
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
