"""The service's own Prometheus metrics, in a registry per app (HTTP metrics join it in ``app.py``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("decode", "infer", "encode")
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
AREA_FRACTION_BUCKETS = (0, 1e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1)
COMPONENT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
PIXEL_BUCKETS = (1e5, 1e6, 4e6, 8e6, 12.5e6, 16e6, 25e6, 50e6)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.stage_seconds = Histogram(
            "redseg_inference_duration_seconds", "Time per request in each stage.", ["stage"], buckets=SECONDS_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "redseg_queue_wait_seconds", "Time a request waited for an inference worker.", buckets=SECONDS_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("redseg_queue_depth", "Requests waiting for an inference worker.", registry=r)
        self.in_flight = Gauge("redseg_requests_in_flight", "Requests admitted and not yet answered.", registry=r)
        self.expected_wait = Gauge(
            "redseg_expected_wait_seconds",
            "Expected seconds to answer a request arriving now: (requests in progress / workers + 1) x recent inference time.",
            registry=r,
        )
        self.image_memory = Gauge(
            "redseg_image_memory_bytes", "Memory reserved for the images of the requests in progress.", registry=r
        )
        self.tiles = Counter("redseg_tiles", "Tiles run through the network.", registry=r)
        self.batch_size = Histogram(
            "redseg_batch_size", "Tiles per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.image_pixels = Histogram("redseg_image_pixels", "Pixels per segmented image.", buckets=PIXEL_BUCKETS, registry=r)
        self.model_info = Gauge(
            "redseg_model_info", "The served model (value 1).", ["name", "version", "sha256", "device"], registry=r
        )
        self.area_fraction = Histogram(
            "redseg_lesion_area_fraction", "Share of the image's pixels segmented as the lesion.", ["lesion"],
            buckets=AREA_FRACTION_BUCKETS, registry=r,
        )
        self.components = Histogram(
            "redseg_lesion_components", "Connected lesion regions per image.", ["lesion"], buckets=COMPONENT_BUCKETS, registry=r
        )
        self.referral_score = Histogram(
            "redseg_referral_score", "Referral score per photograph (0..1).", buckets=SCORE_BUCKETS, registry=r
        )
        self.macular_oedema_risk = Histogram(
            "redseg_macular_oedema_risk", "Risk-of-macular-oedema score per photograph (0..1).", buckets=SCORE_BUCKETS, registry=r
        )
        self.rejected = Counter("redseg_requests_rejected", "Requests refused, by reason.", ["reason"], registry=r)
        self.ungradable = Counter(
            "redseg_ungradable_photographs", "Photographs answered ungradable (no referral decision), by reason.", ["reason"],
            registry=r,
        )
        self.inference_errors = Counter("redseg_inference_errors", "Inference runs that raised.", registry=r)
        self.worker_restarts = Counter("redseg_worker_restarts", "Inference workers restarted after dying.", registry=r)
        self.ready = Gauge("redseg_ready", "1 when every worker is up and warmed up.", registry=r)
        self.gpu_memory = Gauge(
            "redseg_gpu_memory_allocated_bytes", "GPU memory held by tensors, per device.", ["device"], registry=r
        )
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)

    def watch_lesions(self, lesions: Iterable[str]) -> None:
        """The per-lesion series, at zero until observed, for each lesion the served model segments."""
        for lesion in lesions:
            self.area_fraction.labels(lesion=lesion)
            self.components.labels(lesion=lesion)

    def watch_gpu(self, device: str) -> None:
        if device.startswith("cuda"):
            self.gpu_memory.labels(device=device).set_function(lambda: torch.cuda.memory_allocated(device))
