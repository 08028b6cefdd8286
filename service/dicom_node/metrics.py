"""The DICOM node's Prometheus counters; the worker pool's own metrics (service.metrics) join the same registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

FAILURE_REASONS = ("busy", "unsupported", "corrupt", "too_large", "too_small", "inference", "outbox")


class NodeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.associations = Counter(
            "redseg_dicom_associations", "Associations requested of the Storage SCP, by outcome (accepted, refused).",
            ["outcome"], registry=r)
        self.received = Counter("redseg_dicom_photographs_received", "Photographs received by C-STORE.", registry=r)
        self.failed = Counter(
            "redseg_dicom_photographs_failed", "Photographs answered with a failure status, by reason.", ["reason"], registry=r)
        self.stored = Counter("redseg_dicom_results_stored", "SEG and SR instances the destination took.", registry=r)
        self.send_failures = Counter(
            "redseg_dicom_send_failures", "Tries to send waiting results that failed (the results are kept).", registry=r)
        self.expired = Counter(
            "redseg_dicom_results_expired", "Results dropped unsent after REDSEG_DICOM_KEEP_DAYS.", registry=r)
        self.waiting = Gauge("redseg_dicom_results_waiting", "SEG and SR instances waiting in the outbox.", registry=r)
        for outcome in ("accepted", "refused"):
            self.associations.labels(outcome=outcome)
        for reason in FAILURE_REASONS:
            self.failed.labels(reason=reason)
