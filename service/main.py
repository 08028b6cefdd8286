"""The ASGI app for ``uvicorn service.main:app`` (settings from REDSEG_* variables).

``redseg-serve`` (``service.serve``) runs this app with the connection limits and the
graceful shutdown the service is meant to have: use it to serve."""

from service.app import create_app
from service.serve import configure_logging

configure_logging()

app = create_app()
