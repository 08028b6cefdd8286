"""Client errors as JSON ``{"detail": "..."}`` (bad parameters add an ``errors`` list), each counted
by reason; server errors with an error id."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Send

from model.input_check import refusal_reason

log = logging.getLogger("service")


class ServiceError(Exception):
    """A request the service will not serve: ``status`` and ``detail`` go to the client, ``reason`` to metrics."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers


def unfit_photograph(exc: Exception) -> ServiceError:
    """The 422 for a photograph ``model.input_check.admit_photograph`` refuses."""
    return ServiceError(422, refusal_reason(exc), str(exc))


def unavailable(reason: str, detail: str, retry_after: int) -> ServiceError:
    return ServiceError(503, reason, detail, headers={"Retry-After": str(retry_after)})


async def send_error(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """An error answered from ASGI middleware (outside FastAPI's handlers), closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    raw_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def internal_error(message: str, exc: BaseException | None = None) -> JSONResponse:
    """Log ``exc`` under a fresh error id and answer 500 with that id (and nothing else about it)."""
    error_id = uuid.uuid4().hex[:12]
    log.error("%s (error id %s)", message, error_id, exc_info=exc)
    return JSONResponse({"detail": f"{message} (error id {error_id})"}, status_code=500)


def count_rejection(request: Request, reason: str) -> None:
    request.app.state.metrics.rejected.labels(reason=reason).inc()


def validation_error_body(errors: Sequence[Any]) -> dict:
    """The one error shape, for bad parameters too: ``detail`` says it in a sentence, ``errors``
    lists each problem as FastAPI finds it (``loc``, ``msg``, ``type``)."""
    issues = [{"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]} for error in errors]
    summary = "; ".join(f"{' '.join(issue['loc'])}: {issue['msg']}" for issue in issues)
    return {"detail": f"invalid request: {summary}", "errors": issues}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        count_rejection(request, exc.reason)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_parameters(request: Request, exc: RequestValidationError) -> JSONResponse:
        count_rejection(request, "invalid_parameters")
        return JSONResponse(validation_error_body(exc.errors()), status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return internal_error("internal error", exc)
