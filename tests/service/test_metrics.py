"""GET /metrics: HTTP metrics and the service's own, moving as requests are served."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.service.helpers import segment


def samples(http: httpx.Client) -> dict[tuple[str, frozenset], float]:
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(metrics: dict, metric: str, **labels) -> float:
    return sum(v for (n, l), v in metrics.items() if n == metric and set(labels.items()) <= l)


def test_counters_move(client: httpx.Client, small_png: bytes):
    before = samples(client)
    assert segment(client, small_png).status_code == 200
    assert segment(client, b"plain text", "x.txt", "application/octet-stream").status_code == 415
    after = samples(client)

    def moved(metric: str, **labels) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    assert moved("http_requests_total", handler="/segment", status="2xx") == 1
    assert moved("http_requests_total", handler="/segment", status="4xx") == 1
    assert moved("redseg_requests_rejected_total", reason="not_an_image") == 1
    assert moved("redseg_tiles_total") >= 1
    assert moved("redseg_batch_size_count") >= 1
    for stage in ("decode", "infer", "encode"):
        assert moved("redseg_inference_duration_seconds_count", stage=stage) == 1
    assert moved("redseg_queue_wait_seconds_count") == 1
    for lesion in ("MA", "HE"):
        assert moved("redseg_lesion_area_fraction_count", lesion=lesion) == 1
        assert moved("redseg_lesion_components_count", lesion=lesion) == 1
    assert moved("redseg_image_pixels_sum") == 120 * 80
    assert value(after, "redseg_model_info", name="redseg-test", version="test", device="cpu") == 1
    assert value(after, "redseg_ready") == 1
    assert value(after, "redseg_queue_depth") == 0
    assert value(after, "redseg_requests_in_flight") == 0


def test_byte_limit_rejections_are_counted(client: httpx.Client):
    before = samples(client)
    response = client.post("/segment", content=b"x" * 3_000_000, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert value(samples(client), "redseg_requests_rejected_total", reason="too_large") - value(
        before, "redseg_requests_rejected_total", reason="too_large"
    ) == 1
