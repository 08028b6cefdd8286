"""The OpenAPI document, made to say what this server does: bearer auth only where a token is set."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from service.settings import Settings


def _without_security(spec: dict[str, Any]) -> dict[str, Any]:
    spec.get("components", {}).pop("securitySchemes", None)
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            operation.pop("security", None)
            operation.get("responses", {}).pop("401", None)
    return spec


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """With no REDSEG_API_TOKEN, /segment is open: the document declares no auth and no 401."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            app.openapi_schema = spec if settings.api_token is not None else _without_security(spec)
        return app.openapi_schema

    app.openapi = openapi
