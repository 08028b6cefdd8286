"""The DICOM node: a Storage SCP for fundus photographs whose C-STORE answer comes once the SEG and SR are made
and kept on disk; a forwarder then stores them to the destination.

The photograph's C-STORE is answered success only when its results are safely in the outbox, so nothing the
sender was told is done can be lost; a busy model (the API's admission says no, or no answer in time) is
0xA700 "Out of Resources", which senders retry later; a photograph RedSeg cannot read is a failure status
naming why. Logs carry the calling AE title and the screening line, never a patient attribute or UID.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from model.formats.dicom import PHOTOGRAPH_SOP_CLASSES, TRANSFER_SYNTAXES
from model.screening.summary import one_line
from service.admission import Overloaded
from service.app import load_pool
from service.dicom_node.destinations import Forwarder, make_destination
from service.dicom_node.metrics import NodeMetrics
from service.dicom_node.outbox import Outbox
from service.dicom_node.pipeline import Segmenter
from service.dicom_node.settings import NodeSettings
from service.errors import ServiceError
from service.metrics import Metrics
from service.settings import Settings
from service.worker import WorkerPool

log = logging.getLogger("service.dicom_node")
# pynetdicom logs PDUs and DIMSE messages (identifiers among them) below WARNING: not in RedSeg's log.
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
"""Refused, Out of Resources: the model is busy; the sender retries later."""
OUTBOX_FULL = 0xA701
"""Refused, Out of Resources: the results could not be kept (the outbox's disk)."""
NOT_MATCHING = 0xA900
"""Error, Data Set does not match SOP Class: a photograph of a kind RedSeg does not read."""
CANNOT_UNDERSTAND = 0xC000
"""Error, Cannot understand: corrupt, too many pixels, or too small for the model."""
PROCESSING_FAILURE = 0x0110
SERVICE_ERRORS = {415: ("unsupported", NOT_MATCHING), 400: ("corrupt", CANNOT_UNDERSTAND),
                  413: ("too_large", CANNOT_UNDERSTAND), 422: ("too_small", CANNOT_UNDERSTAND)}
READY_TIMEOUT_S = 600.0


def status(code: int, comment: str = "") -> Dataset:
    answer = Dataset()
    answer.Status = code
    if comment:
        answer.ErrorComment = comment[:64]
    return answer


def server_tls(settings: NodeSettings) -> ssl.SSLContext | None:
    """The SCP's TLS context (client certificates required with a CA), or None without a certificate."""
    if settings.tls_cert is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_ca)
    return context


def client_tls(settings: NodeSettings) -> ssl.SSLContext | None:
    """The context for sending to the destination over TLS (its certificate checked against the CA)."""
    if settings.tls_ca is None:
        return None
    context = ssl.create_default_context(cafile=settings.tls_ca)
    if settings.tls_cert is not None:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class DicomNode:
    def __init__(self, settings: Settings, node: NodeSettings, pool: WorkerPool | None = None):
        self.settings = settings
        self.node = node
        self.metrics = NodeMetrics()
        self.pool = pool or load_pool(settings, Metrics(self.metrics.registry))
        self.segmenter = Segmenter(self.pool, settings.max_pixels, settings.request_timeout_s, node.seg_type)
        self.outbox = Outbox(node.outbox, node.keep_s)
        self.destination = make_destination(node, client_tls(node))
        self.forwarder = Forwarder(self.outbox, self.destination, self.metrics, node.retry_interval_s)
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self.loop.run_forever, name="redseg-dicom-loop", daemon=True)
        self.server = None
        self._metrics_server = None
        self._supervisor = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        """Load and warm the model, then listen; results left from an earlier run are sent again."""
        self._loop_thread.start()
        self.pool.start()
        self._supervisor = asyncio.run_coroutine_threadsafe(self.pool.supervise(), self.loop)
        deadline = time.monotonic() + ready_timeout_s
        while not self.pool.ready:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model was not ready after {ready_timeout_s:.0f} s")
            time.sleep(0.1)
        self.forwarder.start()
        if self.node.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(self.node.metrics_port, self.node.metrics_host, self.metrics.registry)
        self.server = self._application_entity().start_server(
            (self.node.host, self.node.port), block=False, ssl_context=server_tls(self.node), evt_handlers=[
                (evt.EVT_C_STORE, self._on_store), (evt.EVT_ESTABLISHED, self._on_accepted), (evt.EVT_REJECTED, self._on_refused)])
        log.info("%s listening on %s:%d (TLS %s); callers %s; results by %s", self.node.ae_title, self.node.host, self.port,
                 "on" if self.node.tls_cert else "off", ", ".join(self.node.allowed_callers), self.destination)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.forwarder.stop()
        self.pool.stop(10.0)
        if self._loop_thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._cancel_supervisor(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._loop_thread.join(10)

    async def _cancel_supervisor(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.sleep(0)  # the task sees its cancellation before the loop stops

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.node.ae_title)
        ae.require_calling_aet = list(self.node.allowed_callers)
        ae.require_called_aet = True
        ae.dimse_timeout = ae.network_timeout = self.settings.request_timeout_s + 60
        contexts = [build_context(sop_class, list(TRANSFER_SYNTAXES)) for sop_class in PHOTOGRAPH_SOP_CLASSES]
        ae.supported_contexts = contexts + [build_context(Verification)]
        return ae

    def _on_accepted(self, event: evt.Event) -> None:
        self.metrics.associations.labels(outcome="accepted").inc()

    def _on_refused(self, event: evt.Event) -> None:
        self.metrics.associations.labels(outcome="refused").inc()
        log.warning("refused an association from %r to %r", event.assoc.requestor.ae_title, event.assoc.acceptor.ae_title)

    def _on_store(self, event: evt.Event) -> Dataset:
        self.metrics.received.inc()
        caller = event.assoc.requestor.ae_title
        future = asyncio.run_coroutine_threadsafe(self.process(event.encoded_dataset(), caller), self.loop)
        try:
            code, comment = future.result(self.settings.request_timeout_s + 30)
        except Exception:  # noqa: BLE001 - the loop is gone or stuck: the sender retries later
            future.cancel()
            code, comment = self._failed("busy", OUT_OF_RESOURCES, "no answer in time")
        return status(code, comment)

    async def process(self, data: bytes, caller: str) -> tuple[int, str]:
        """Segment one photograph and keep its results; the C-STORE status and error comment."""
        started = time.perf_counter()
        try:
            files, summary = await self.segmenter.segment(data)
        except Overloaded as exc:
            return self._failed("busy", OUT_OF_RESOURCES, exc.detail)
        except ServiceError as exc:
            reason, code = SERVICE_ERRORS.get(exc.status, ("inference", PROCESSING_FAILURE))
            return self._failed(reason, code, exc.detail)
        except Exception as exc:  # noqa: BLE001 - the sender is told, the node goes on
            log.error("inference failed: %s", type(exc).__name__)
            return self._failed("inference", PROCESSING_FAILURE, "inference failed")
        try:
            await asyncio.to_thread(self.outbox.put, files)
        except OSError as exc:
            log.error("cannot keep results in %s: %s", self.outbox.folder, exc.strerror)
            return self._failed("outbox", OUTBOX_FULL, "the results could not be kept; retry later")
        self.forwarder.wake()
        log.info("photograph from %s: SEG and SR in %.1f s (%s)", caller, time.perf_counter() - started, one_line(summary))
        return SUCCESS, ""

    def _failed(self, reason: str, code: int, detail: str) -> tuple[int, str]:
        self.metrics.failed.labels(reason=reason).inc()
        log.warning("photograph refused (0x%04X, %s): %s", code, reason, detail)
        return code, detail
