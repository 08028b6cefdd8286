"""The model's load, after the server listens.

The lifespan (``service.app``) loads the model in a thread, so that ``/healthz`` answers at once
while a first start makes an OpenVINO IR (minutes on a small CPU). Meanwhile ``/readyz`` and the
model routes answer 503 saying what the load is doing. A failed load calls ``on_failure``:
``redseg-serve`` then stops and exits 1; a server that registers nothing gets 503 on ``/healthz``
too, so that no orchestrator keeps a process that will never serve.
"""

from __future__ import annotations

from collections.abc import Callable

from model.backends import IR_KIND, resolve_backend
from model.checkpoint import CheckpointError
from service.errors import ServiceError, unavailable
from service.settings import Settings
from service.worker import WorkerPool

LOADING = "loading the model"
LOADING_RETRY_AFTER_S = 5
MAKING_IR_RETRY_AFTER_S = 30
"""Making an OpenVINO IR takes minutes: no client need ask every few seconds."""


class Loading:
    """Where the model's load stands: what it is doing, or the error that ended it."""

    def __init__(self) -> None:
        self.stage: str | None = LOADING
        """What the load is doing (for /readyz and the 503s); None once it has ended."""
        self.retry_after_s = LOADING_RETRY_AFTER_S
        self.error: str | None = None
        self.stopping = False
        """Set at shutdown: a model loaded after it is not served."""
        self.on_failure: list[Callable[[str], None]] = []

    def begin(self, settings: Settings) -> None:
        """Say what the load will do (called in the loading thread, before it starts)."""
        kind = ir_to_make(settings)
        if kind is not None:
            self.stage = f"{LOADING}: making the OpenVINO {kind} model for this checkpoint (first start)"
            self.retry_after_s = MAKING_IR_RETRY_AFTER_S

    def done(self) -> None:
        self.stage = None

    def fail(self, message: str) -> None:
        self.stage = None
        self.error = message
        for callback in self.on_failure:
            callback(message)

    def reason(self, pool: WorkerPool | None) -> str:
        """Why the service is not ready (the pool is the app's: None until loaded)."""
        if self.error is not None:
            return f"the model failed to load: {self.error}"
        if pool is None:
            return self.stage or LOADING
        if all(worker.alive for worker in pool.workers):
            return "warming up the model"
        return "an inference worker is restarting"

    def not_ready(self, pool: WorkerPool | None) -> ServiceError:
        """The 503 of a model route before the model can answer."""
        retry_after = self.retry_after_s if pool is None else pool.retry_after()
        return unavailable("not_ready", f"the model is not ready yet ({self.reason(pool)}): retry later", retry_after)


def ir_to_make(settings: Settings) -> str | None:
    """The kind of OpenVINO IR the load will have to make first (none cached for this checkpoint), else None."""
    from model.openvino_export import find_ir, ir_key

    try:
        backend = resolve_backend(settings.backend, settings.devices()[0])
        kind = IR_KIND.get(backend)
        if kind is None or find_ir(settings.checkpoint, kind, ir_key(settings.checkpoint, kind)) is not None:
            return None
    except (CheckpointError, RuntimeError, ValueError, OSError):
        return None  # the load itself will say what is wrong
    return kind
