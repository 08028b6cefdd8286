"""The viewer at /, a page for people, served with every asset by the API itself (no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

VIEWER_DIR = Path(__file__).resolve().parent.parent / "static" / "viewer"

router = APIRouter(include_in_schema=False)


@router.get("/")
def viewer() -> FileResponse:
    return FileResponse(VIEWER_DIR / "index.html", media_type="text/html")


def install_pages(app: FastAPI) -> None:
    """The viewer and its static files (/docs and /redoc come with ``FastAPIOffline``: ``service.app``)."""
    app.include_router(router)
    app.mount("/static/viewer", StaticFiles(directory=VIEWER_DIR), name="viewer")
