"""``redseg-serve``: uvicorn with the service's connection limits and graceful shutdown.

Settings come from REDSEG_* variables (``service.settings``); host and port from the
command line, or UVICORN_HOST / UVICORN_PORT. The h11 protocol is used because it bounds
the request head (``REDSEG_MAX_HEADER_BYTES``; httptools accepts any size).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from types import FrameType

import uvicorn

from service.app import WORKER_STOP_TIMEOUT_S, create_app
from service.settings import Settings
from service.shutdown import Drain

log = logging.getLogger("service")

UVICORN_CLOSE_TIMEOUT_S = 3.0
"""After the drain, how long uvicorn waits for connections still sending their answers."""


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")


class GracefulServer(uvicorn.Server):
    """On the first SIGTERM or SIGINT, drain (``service.shutdown``) before uvicorn's own shutdown;
    a second signal stops at once. The process then exits with status 0; after a failed model load
    (``service.startup``), with status 1."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float):
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task | None = None
        self.failed = False

    def stop_failed(self, message: str) -> None:
        """The model failed to load: stop now (the load's error is in the log)."""
        self.failed = True
        self.should_exit = True

    async def startup(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self.drain.draining or not self.started:
            super().handle_exit(sig, frame)  # not serving yet, or asked twice: stop now
            if self.drain.draining:
                self.force_exit = True
            return
        self.drain.draining = True
        self._loop.call_soon_threadsafe(self._start_drain, signal.Signals(sig).name)

    def _start_drain(self, signal_name: str) -> None:
        log.info("%s received", signal_name)
        self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        seconds = await self.drain.run(self.grace_s)
        log.info("drained in %.1f s; stopping", seconds)
        self.should_exit = True


def build_server(host: str, port: int, settings: Settings | None = None) -> GracefulServer:
    settings = settings or Settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_graceful_shutdown=UVICORN_CLOSE_TIMEOUT_S,
    )
    server = GracefulServer(config, app.state.drain, settings.shutdown_grace_s)
    app.state.loading.on_failure.append(server.stop_failed)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="redseg-serve",
        description="Serve the RedSeg API: uvicorn with the service's connection limits and graceful shutdown "
        "(settings from REDSEG_* variables).",
    )
    parser.add_argument("--host", default=os.environ.get("UVICORN_HOST", "127.0.0.1"), help="Interface (default: %(default)s).")
    parser.add_argument("--port", type=int, default=int(os.environ.get("UVICORN_PORT", "8000")), help="Port (default: %(default)s).")
    args = parser.parse_args(argv)
    configure_logging()
    server = build_server(args.host, args.port)
    log.info(
        "graceful shutdown: %.0f s for requests in progress, then up to %.0f s for the inference in hand",
        server.grace_s, WORKER_STOP_TIMEOUT_S,
    )
    server.run()
    if server.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
