"""The OpenAPI document, made to say what this server does: bearer auth only where a token is set, and the
lesions of the served model."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from model.config import ALL_LESIONS
from service.routes.segment import describe_served_lesions
from service.settings import Settings


def _without_security(spec: dict[str, Any]) -> dict[str, Any]:
    spec.get("components", {}).pop("securitySchemes", None)
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)
    return spec


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """With no REDSEG_API_TOKEN, /segment is open: the document declares no auth and no 401. /segment's lesion
    parameters are the served model's (every lesion RedSeg knows before the model is loaded: not kept then)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()
        pool = app.state.pool
        describe_served_lesions(spec, ALL_LESIONS if pool is None else pool.lesions)
        spec = spec if settings.api_token is not None else _without_security(spec)
        app.openapi_schema = None if pool is None else spec
        return spec

    app.openapi = openapi
