"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.deps import PoolDep
from service.schemas import Health, ModelInfo, Readiness, WorkerStatus

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The process is up (while the model loads too)",
    responses={503: {"model": Health, "description": "The model failed to load: the process will never serve."}},
)
def healthz(request: Request) -> Health | JSONResponse:
    error = request.app.state.loading.error
    if error is not None:
        return JSONResponse(Health(status="failed", detail=error).model_dump(), status_code=503)
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The model is loaded and warmed up on every worker",
    responses={503: {"model": Readiness, "description": "Not ready: loading, warming up, a worker is restarting, or "
                     "shutting down; `reason` says which."}},
)
def readyz(request: Request, pool: PoolDep) -> JSONResponse:
    if request.app.state.drain.draining:
        return JSONResponse(Readiness(ready=False, reason="shutting down").model_dump(), status_code=503)
    if pool is None:
        reason = request.app.state.loading.reason(pool)
        return JSONResponse(Readiness(ready=False, reason=reason).model_dump(), status_code=503)
    ckpt = pool.checkpoint
    readiness = Readiness(
        ready=pool.ready,
        reason=None if pool.ready else request.app.state.loading.reason(pool),
        model=ModelInfo(
            name=ckpt.name, version=ckpt.version, sha256=ckpt.sha256, device=",".join(w.device for w in pool.workers)
        ),
        workers=[
            WorkerStatus(device=w.device, alive=w.alive, warm=w.warm, restarts=w.restarts, error=w.error)
            for w in pool.workers
        ],
    )
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)
