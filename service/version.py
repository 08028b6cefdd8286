"""The service's version: the project's, as pyproject.toml declares it."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "redseg"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def app_version() -> str:
    """The installed package's version; from a source tree that is not installed (the Docker image
    runs one), the pyproject.toml beside it; ``unknown`` without either."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        if PYPROJECT.is_file():
            return tomllib.loads(PYPROJECT.read_text())["project"]["version"]
        return "unknown"
