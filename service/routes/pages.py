"""Pages for people, served with every asset by the API itself (no CDN): the viewer at / and the API docs."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

VIEWER_DIR = Path(__file__).resolve().parent.parent / "static" / "viewer"
DOCS_ASSETS = Path(str(files("fastapi_offline") / "static"))
"""Swagger UI and ReDoc, as the fastapi-offline package ships them."""

router = APIRouter(include_in_schema=False)


@router.get("/")
def viewer() -> FileResponse:
    return FileResponse(VIEWER_DIR / "index.html", media_type="text/html")


ASSETS = "/static/docs"
DOCS_PAGE = dict(openapi_url="/openapi.json", title="RedSeg API")


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        **DOCS_PAGE,
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return get_redoc_html(
        **DOCS_PAGE, redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False
    )


def install_pages(app: FastAPI) -> None:
    """The viewer, /docs and /redoc, and their static files (the app must be built with docs_url=None)."""
    app.include_router(router)
    app.mount("/static/viewer", StaticFiles(directory=VIEWER_DIR), name="viewer")
    app.mount(ASSETS, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
