"""The ASGI entry point: ``uvicorn service.main:app`` (settings from REDSEG_* variables)."""

import logging

from service.app import create_app

logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")

app = create_app()
