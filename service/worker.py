"""Inference workers: one thread per device owns its model and runs queued jobs one at a time.

The event loop only enqueues jobs and awaits their futures; model code runs on the
worker threads. Admission (``service.admission``, through ``WorkerPool.admit``) lets a
request queue only if it can be answered within the request timeout and its image fits
the memory cap, so a busy service answers 503 at once instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np

from model.checkpoint import Checkpoint
from model.fov import FovMapping, synthetic_fundus
from model.input_check import UNFIT, admit_photograph
from model.inference import TileSettings, predict_probabilities, working_tile_count
from service.admission import DEFAULT_INFER_S, Admission, Reservation, held_bytes, working_bytes
from service.errors import unfit_photograph
from service.metrics import Metrics

log = logging.getLogger("service.worker")

RESTART_DELAY_S = 1.0


class WorkerDied(RuntimeError):
    """The worker thread died while running this job."""


@dataclass(frozen=True)
class InferenceResult:
    probabilities: np.ndarray
    """float32 (C, H, W) in 0..1, one channel per lesion the model segments, in ``WorkerPool.lesions`` order."""
    queue_wait_s: float
    infer_s: float
    device: str


@dataclass(eq=False)
class Job:
    image: np.ndarray
    mapping: FovMapping
    """How the model sees the image (``model.fov.working_mapping``), made when the request was admitted."""
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    enqueued_at: float = field(default_factory=time.perf_counter)
    abandoned: bool = False
    """Set by the request when its client went away or its time ran out: the worker skips it."""

    def settle(self, result: InferenceResult | None = None, error: BaseException | None = None) -> None:
        def apply() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        try:
            self.loop.call_soon_threadsafe(apply)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            pass


_STOP = object()


class Worker:
    def __init__(self, checkpoint: Checkpoint, device: str, jobs: queue.Queue, tiles: TileSettings, metrics: Metrics):
        self.checkpoint = checkpoint
        self.device = device
        self.jobs = jobs
        self.tiles = tiles
        self.metrics = metrics
        self.thread: threading.Thread | None = None
        self.warm = False
        self.error: str | None = None
        self.died_at: float | None = None
        self.restarts = 0
        self.infer_s_average: float | None = None
        self.infer_s_measured = False
        """False while ``infer_s_average`` is the warm-up's time (a first run: slower than later ones)."""

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and self.error is None

    @property
    def ready(self) -> bool:
        return self.alive and self.warm

    def start(self) -> None:
        self.warm = False
        self.error = None
        self.died_at = None
        self.thread = threading.Thread(target=self._run, name=f"redseg-worker-{self.device}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            predict_probabilities(self.checkpoint.model, synthetic_fundus(self.checkpoint.config), self.tiles,
                                  self.checkpoint.calibration)
            warm_up_s = time.perf_counter() - started
            if not self.infer_s_measured:  # the warm-up runs a whole working-scale image
                self.infer_s_average = warm_up_s
            self.warm = True
            log.info("worker on %s is ready (its warm-up, one working-scale image through the network, took %.1f s; "
                     "later ones take less)", self.device, warm_up_s)
            while (job := self.jobs.get()) is not _STOP:
                self._serve(job)
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self.died_at = time.monotonic()
            log.critical("worker on %s died: %s", self.device, self.error, exc_info=exc)
            raise

    def _serve(self, job: Job) -> None:
        if job.abandoned:
            return
        started = time.perf_counter()
        model = self.checkpoint.model
        mapping = job.mapping
        try:
            probabilities = predict_probabilities(model, job.image, self.tiles, self.checkpoint.calibration, mapping)
        except Exception as exc:
            job.settle(error=exc)
            return
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            job.settle(error=WorkerDied(f"the inference worker on {self.device} died"))
            raise
        infer_s = time.perf_counter() - started
        wait_s = started - job.enqueued_at
        self.infer_s_average = 0.8 * self.infer_s_average + 0.2 * infer_s if self.infer_s_measured else infer_s
        self.infer_s_measured = True
        self._observe(working_tile_count(mapping.size, model, self.tiles), wait_s, infer_s)
        job.settle(InferenceResult(probabilities, wait_s, infer_s, self.device))

    def _observe(self, tiles: int, wait_s: float, infer_s: float) -> None:
        batch = self.tiles.batch_size
        for first in range(0, tiles, batch):
            self.metrics.batch_size.observe(min(batch, tiles - first))
        self.metrics.tiles.inc(tiles)
        self.metrics.queue_wait.observe(wait_s)
        self.metrics.stage_seconds.labels(stage="infer").observe(infer_s)


class WorkerPool:
    """The workers (one per device) sharing one job queue, and the admission control in front of it."""

    def __init__(
        self,
        checkpoints: dict[str, Checkpoint],
        tiles: TileSettings,
        metrics: Metrics,
        *,
        queue_size: int,
        timeout_s: float,
        max_image_bytes: int,
        fundus_check: bool = True,
    ):
        self.jobs: queue.Queue = queue.Queue()
        self.metrics = metrics
        self.fundus_check = fundus_check
        self.workers = [Worker(ckpt, device, self.jobs, tiles, metrics) for device, ckpt in checkpoints.items()]
        self.admission = Admission(
            workers=len(self.workers),
            timeout_s=timeout_s,
            max_requests=queue_size + len(self.workers),
            max_image_bytes=max_image_bytes,
            recent_infer_s=self.recent_infer_s,
        )
        metrics.queue_depth.set_function(self.jobs.qsize)
        metrics.in_flight.set_function(lambda: self.admission.in_flight)
        metrics.expected_wait.set_function(self.admission.expected_s)
        metrics.image_memory.set_function(lambda: self.admission.image_bytes)
        metrics.ready.set_function(lambda: float(self.ready))
        first = self.checkpoint
        for worker in self.workers:
            metrics.model_info.labels(name=first.name, version=first.version, sha256=first.sha256, device=worker.device).set(1)
            metrics.watch_gpu(worker.device)
        metrics.watch_lesions(self.lesions)

    @property
    def checkpoint(self) -> Checkpoint:
        return self.workers[0].checkpoint

    @property
    def lesions(self) -> tuple[str, ...]:
        """The lesions the served model segments, in its output channel (and thresholds') order."""
        return self.checkpoint.config.lesions

    @property
    def ready(self) -> bool:
        return all(worker.ready for worker in self.workers)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Let each worker finish its job in hand and exit (the interpreter must not end under a running model)."""
        self.abandon_waiting()
        for _ in self.workers:
            self.jobs.put(_STOP)
        deadline = time.monotonic() + timeout_s
        for worker in self.workers:
            if worker.thread is not None:
                worker.thread.join(max(0.0, deadline - time.monotonic()))

    def abandon_waiting(self) -> None:
        """Mark every queued job abandoned: the workers skip them (at shutdown, their requests are answered 503)."""
        with self.jobs.mutex:
            for job in self.jobs.queue:
                if isinstance(job, Job):
                    job.abandoned = True

    def recent_infer_s(self) -> float:
        """The workers' recent inference time per request (measured by the warm-up until a request has run)."""
        averages = [w.infer_s_average for w in self.workers if w.infer_s_average is not None]
        return sum(averages) / len(averages) if averages else DEFAULT_INFER_S

    def retry_after(self) -> int:
        return self.admission.retry_after_s()

    def admit(self, pixels: int) -> AbstractContextManager[Reservation]:
        """Hold a place, and the memory of an image of ``pixels``, for the request's decode, queue wait,
        inference and encode; raises ``service.admission.Overloaded`` when the request could not finish in time."""
        return self.admission.admit(held_bytes(pixels))

    async def map(self, image: np.ndarray, reservation: Reservation) -> FovMapping:
        """How the served model sees ``image`` (worked out in a thread), its working-scale memory then held under
        the request's ``reservation``; a 422 ServiceError for a photograph it will not take (``model.input_check``)."""
        try:
            mapping = await asyncio.to_thread(admit_photograph, image, self.checkpoint.config, self.fundus_check)
        except UNFIT as exc:
            raise unfit_photograph(exc) from None
        reservation.grow(working_bytes(mapping.size))
        return mapping

    def submit(self, image: np.ndarray, mapping: FovMapping) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(image=image, mapping=mapping, loop=loop, future=loop.create_future())
        self.jobs.put(job)
        return job

    async def supervise(self, interval_s: float = 0.2) -> None:
        """Restart dead workers (after ``RESTART_DELAY_S``, so /readyz can be seen reporting it)."""
        while True:
            await asyncio.sleep(interval_s)
            for worker in self.workers:
                if worker.alive or worker.thread is None:
                    continue
                worker.died_at = worker.died_at or time.monotonic()
                if time.monotonic() - worker.died_at < RESTART_DELAY_S:
                    continue
                if worker.thread.is_alive():
                    continue  # still unwinding
                worker.restarts += 1
                self.metrics.worker_restarts.inc()
                log.warning("restarting the worker on %s (restart %d)", worker.device, worker.restarts)
                worker.start()
