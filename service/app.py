"""The FastAPI application: settings, lifespan (the model loaded while the server listens), middleware, routes,
metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from fastapi.responses import PlainTextResponse
from prometheus_fastapi_instrumentator import Instrumentator

from model.backends import backend_of, load_for_inference
from model.checkpoint import CheckpointError
from model.screening.referral import DISCLAIMER
from service.errors import install_error_handlers
from service.openapi import install_openapi
from service.limits import BodyLimitMiddleware, BodyLimits
from service.memory import configure_heap, trim_after_requests
from service.metrics import Metrics
from service.routes import health, segment
from service.routes.pages import install_pages
from service.settings import Settings
from service.shutdown import Drain, DrainMiddleware
from service.startup import Loading
from service.version import app_version
from service.worker import WorkerPool

log = logging.getLogger("service")

MULTIPART_OVERHEAD_BYTES = 64 * 1024
"""Room in the body limit for the multipart framing around the image."""


METRICS_RESPONSE = {
    200: {"description": "Prometheus text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}}
}

WORKER_STOP_TIMEOUT_S = 10.0
"""How long shutdown waits for the inference in hand (its request has been answered by then)."""


class StartupError(RuntimeError):
    pass


def load_pool(settings: Settings, metrics: Metrics) -> WorkerPool:
    """Load the checkpoint on every device; refuse (never serve an untrained network) if it cannot be read."""
    try:
        devices = settings.devices()
        path = settings.checkpoint
        checkpoints = {device: load_for_inference(path, device, settings.backend) for device in devices}
    except (CheckpointError, RuntimeError, ValueError, OSError) as exc:
        message = (
            f"cannot start: {exc}. Point REDSEG_CHECKPOINT at a trained RedSeg checkpoint "
            "(the bundled ones are checkpoints/redseg-default.safetensors and checkpoints/redseg-fast.safetensors)."
        )
        log.error(message)
        raise StartupError(message) from None
    pool = WorkerPool(
        checkpoints,
        settings.tiles_for(devices),
        metrics,
        queue_size=settings.queue_size,
        timeout_s=settings.request_timeout_s,
        max_image_bytes=settings.max_image_memory_bytes,
        fundus_check=settings.fundus_check,
    )
    ckpt = pool.checkpoint
    log.info("serving %s %s (sha256 %s) on %s with %s", ckpt.name, ckpt.version, ckpt.sha256[:12], ", ".join(devices),
             backend_of(ckpt.model))
    return pool


def load_in_thread(settings: Settings, metrics: Metrics, loading: Loading) -> WorkerPool:
    loading.begin(settings)
    return load_pool(settings, metrics)


async def load(app: FastAPI, loading: Loading) -> WorkerPool | None:
    """The pool, loaded in a thread while the server listens; None if the load failed (``loading.fail`` says why)."""
    try:
        return await asyncio.to_thread(load_in_thread, app.state.settings, app.state.metrics, loading)
    except StartupError as exc:
        loading.fail(str(exc))
    except Exception as exc:
        log.critical("cannot start: the model failed to load", exc_info=exc)
        loading.fail(f"cannot start: {type(exc).__name__}: {exc}")
    return None


async def serve_when_loaded(app: FastAPI, loading: Loading) -> None:
    """Load the model, start its workers, then keep them (and the heap) in order until cancelled."""
    pool = await load(app, loading)
    if pool is None or loading.stopping:
        return
    pool.start()
    app.state.pool = pool
    app.state.drain.on_expire.append(pool.abandon_waiting)
    loading.done()
    drain, warm_bytes = app.state.drain, app.state.settings.warm_memory_bytes
    trim = trim_after_requests(lambda: drain.finished, lambda: drain.in_flight, warm_bytes)
    await asyncio.gather(pool.supervise(), trim)


async def stop_serving(app: FastAPI, loading: Loading, serving: asyncio.Task) -> None:
    loading.stopping = True
    if app.state.pool is None and not serving.done():
        log.warning("shutting down while the model loads: the process exits once the load in hand ends")
        await asyncio.wait({serving})  # a thread cannot be interrupted; a model loaded now is not served
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    pool = app.state.pool
    if pool is not None:
        await asyncio.to_thread(pool.stop, WORKER_STOP_TIMEOUT_S)
        app.state.drain.on_expire.remove(pool.abandon_waiting)
        app.state.pool = None


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The server listens at once; the model loads behind it (``service.startup``)."""
    settings: Settings = app.state.settings
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    configure_heap()
    loading: Loading = app.state.loading
    serving = asyncio.create_task(serve_when_loaded(app, loading))
    try:
        yield
    finally:
        await stop_serving(app, loading, serving)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPIOffline(  # /docs and /redoc with their assets served here, no CDN
        static_url="/static/docs",
        title="RedSeg",
        summary="Lesion segmentation of colour fundus photographs: microaneurysms and haemorrhages, and hard and "
        "soft exudates where the served model has those branches.",
        description=f"Viewer for people at [/](/). Each answer carries a screening summary. **{DISCLAIMER}**",
        version=app_version(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.state.pool = None
    app.state.drain = drain = Drain()
    app.state.loading = Loading()
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(segment.router)
    install_pages(app)
    count_rejected = lambda reason: metrics.rejected.labels(reason=reason).inc()  # noqa: E731
    limits = BodyLimits(
        max_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES,
        timeout_s=settings.body_timeout_s,
        drain_bytes=settings.drain_max_bytes,
        drain_s=settings.drain_timeout_s,
    )
    app.add_middleware(BodyLimitMiddleware, limits=limits, on_reject=count_rejected)
    app.add_middleware(DrainMiddleware, drain=drain, limits=limits, on_reject=count_rejected)
    Instrumentator(registry=metrics.registry, excluded_handlers=["/metrics"]).instrument(app).expose(
        app, tags=["metrics"], response_class=PlainTextResponse, responses=METRICS_RESPONSE, summary="Prometheus metrics"
    )
    install_openapi(app, settings)
    return app
