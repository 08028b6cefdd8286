"""Where the node stores its results: a DICOM peer by C-STORE, or a DICOMweb server by STOW-RS; and the
forwarder that sends what waits in the outbox, retrying while the destination is away."""

from __future__ import annotations

import json
import logging
import secrets
import ssl
import threading
import urllib.error
import urllib.request
from io import BytesIO

import pydicom
from pydicom import uid
from pynetdicom import AE

from service.dicom_node.metrics import NodeMetrics
from service.dicom_node.outbox import Outbox
from service.dicom_node.settings import NodeSettings

log = logging.getLogger("service.dicom_node")

RESULT_SOP_CLASSES = (uid.SegmentationStorage, uid.ComprehensiveSRStorage)
STORED = {0x0000, 0xB000, 0xB006, 0xB007}
"""C-STORE statuses that mean stored: success, and the warnings (coerced, elements discarded, not matching)."""


class DestinationError(Exception):
    """The destination did not take a result: it stays in the outbox. ``unreachable``: the destination is away
    (no connection or association, a server error), so the results after it wait too; otherwise it refused
    this result, and the others are still sent."""

    def __init__(self, message: str, unreachable: bool = True):
        super().__init__(message)
        self.unreachable = unreachable


class CStoreDestination:
    def __init__(self, settings: NodeSettings, tls: ssl.SSLContext | None = None):
        self.calling = settings.ae_title
        self.called = settings.destination_ae
        self.address = (settings.destination_host, settings.destination_port)
        self.timeout_s = settings.send_timeout_s
        self.tls = tls

    def __str__(self) -> str:
        return f"C-STORE to {self.called} at {self.address[0]}:{self.address[1]}"

    def send(self, files: list[bytes]) -> None:
        ae = AE(ae_title=self.calling)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = self.timeout_s
        for sop_class in RESULT_SOP_CLASSES:
            ae.add_requested_context(sop_class, [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian])
        tls_args = (self.tls, self.address[0]) if self.tls else None
        assoc = ae.associate(*self.address, ae_title=self.called, tls_args=tls_args)
        if not assoc.is_established:
            raise DestinationError(f"no association with {self}")
        try:
            for data in files:
                status = assoc.send_c_store(pydicom.dcmread(BytesIO(data)))
                code = status.get("Status") if status else None
                if code is None:
                    raise DestinationError(f"{self}: no answer to a C-STORE")
                if code not in STORED:
                    raise DestinationError(f"{self} answered status 0x{code:04X}", unreachable=False)
        finally:
            assoc.release() if assoc.is_established else assoc.abort()


class StowDestination:
    def __init__(self, settings: NodeSettings, tls: ssl.SSLContext | None = None):
        self.url = settings.stow_url.rstrip("/") + "/studies"
        self.token = settings.stow_token
        self.timeout_s = settings.send_timeout_s
        self.tls = tls

    def __str__(self) -> str:
        return f"STOW-RS to {self.url}"

    def send(self, files: list[bytes]) -> None:
        boundary = secrets.token_hex(16)
        body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), data) for data in files)
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        request = urllib.request.Request(self.url, data=body + b"--%s--\r\n" % boundary.encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.tls) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as exc:  # a 4xx refuses this result; a 5xx is the server away
            raise DestinationError(f"{self} answered {exc.code}", unreachable=exc.code >= 500) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DestinationError(f"{self} failed: {type(exc).__name__}") from None
        failed = json.loads(answer or b"{}").get("00081198", {}).get("Value") if answer.strip() else None
        if status != 200 or failed:
            raise DestinationError(f"{self} answered {status} with {len(failed or [])} instances failed", unreachable=False)


def make_destination(settings: NodeSettings, tls: ssl.SSLContext | None) -> CStoreDestination | StowDestination:
    if settings.stow_url is not None:
        return StowDestination(settings, tls)
    return CStoreDestination(settings, tls if settings.destination_tls else None)


class Forwarder:
    """A thread that sends the outbox's results to the destination, oldest first: at once when woken (a new
    result), and every ``interval_s`` while results wait (the destination was away)."""

    def __init__(self, outbox: Outbox, destination, metrics: NodeMetrics, interval_s: float):
        self.outbox = outbox
        self.destination = destination
        self.metrics = metrics
        self.interval_s = interval_s
        self.metrics.waiting.set_function(outbox.count)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redseg-dicom-forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the forwarder must outlive any one failure
                log.exception("sending waiting results failed")
            self._wake.wait(self.interval_s)

    def flush(self) -> bool:
        """Send every waiting result, oldest first; False when one was not taken (it waits for the next try, and
        while the destination is away, so do those after it)."""
        self.metrics.expired.inc(self.outbox.expire())
        all_sent = True
        for files in self.outbox.waiting().values():
            try:
                self.destination.send([path.read_bytes() for path in files])
            except (DestinationError, OSError) as exc:
                self.metrics.send_failures.inc()
                log.warning("%s; %d result files kept, next try in %.0f s", exc, self.outbox.count(), self.interval_s)
                if getattr(exc, "unreachable", True):
                    return False
                all_sent = False
                continue
            self.outbox.remove(files)
            self.metrics.stored.inc(len(files))
        return all_sent
