"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.deps import PoolDep
from service.schemas import Health, ModelInfo, Readiness, WorkerStatus

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The model is loaded and warmed up on every worker",
    responses={503: {"model": Readiness, "description": "Not ready: loading, warming up, a worker is restarting, or shutting down."}},
)
def readyz(request: Request, pool: PoolDep) -> JSONResponse:
    if pool is None or request.app.state.drain.draining:
        return JSONResponse(Readiness(ready=False).model_dump(), status_code=503)
    ckpt = pool.checkpoint
    readiness = Readiness(
        ready=pool.ready,
        model=ModelInfo(
            name=ckpt.name, version=ckpt.version, sha256=ckpt.sha256, device=",".join(w.device for w in pool.workers)
        ),
        workers=[
            WorkerStatus(device=w.device, alive=w.alive, warm=w.warm, restarts=w.restarts, error=w.error)
            for w in pool.workers
        ],
    )
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)
