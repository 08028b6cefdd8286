"""The screening summary in POST /segment, its Prometheus histogram, and the pages served without a CDN."""

from __future__ import annotations

import httpx
import numpy as np

from model.checkpoint import write_referral
from model.screening.referral import ReferralScore
from model.screening.summary import NO_SCORE
from tests.service.helpers import make_settings, png, segment, serve_in_thread, tiny_checkpoint

SCORE = ReferralScore(
    features=["HE_soft", "MA_count_p50"], units=[1e-4, 1.0], mean=[0.0, 0.0], scale=[1.0, 1.0],
    coef=[0.5, 0.2], intercept=-1.0, operating_point=0.4, validation={"roc_auc": 0.9},
)  # fmt: skip
OEDEMA = ReferralScore(
    features=["EX_soft", "HE_soft"], units=[1e-4, 1e-4], mean=[0.0, 0.0], scale=[1.0, 1.0],
    coef=[0.5, 0.1], intercept=-1.0, operating_point=0.3, validation={"roc_auc": 0.95, "target": "risk of macular oedema"},
)  # fmt: skip


def test_answer_without_a_fitted_score_says_why(client: httpx.Client, small_png: bytes):
    body = segment(client, small_png, outputs="none").json()
    screening = body["screening"]
    assert screening["referral"] is None and screening["note"] == NO_SCORE and screening["macular_oedema"] is None
    assert "not a grade" in screening["disclaimer"]
    for lesion in ("MA", "HE"):
        assert 0 <= screening["lesions"][lesion]["count"] <= body["lesions"][lesion]["components"]
    assert 0 < screening["field_of_view"]["fraction_of_image"] <= 1
    assert 0 <= screening["field_of_view"]["gradable_fraction"] <= 1


def test_answer_with_a_fitted_score_and_its_histogram(tmp_path, small_png: bytes):
    checkpoint = tiny_checkpoint(tmp_path / "scored.safetensors")
    write_referral(checkpoint, SCORE.to_dict())
    with serve_in_thread(make_settings(checkpoint)) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        referral = segment(http, small_png, outputs="none").json()["screening"]["referral"]
        assert 0 <= referral["score"] <= 1 and referral["operating_point"] == 0.4
        assert referral["refer"] == (referral["score"] >= 0.4) and referral["validation"]["roc_auc"] == 0.9
        assert "one camera" in referral["validation"]["cameras"] and referral["validation"]["independent"] is None
        metrics = http.get("/metrics").text
    assert "redseg_referral_score_count 1.0" in metrics and "redseg_macular_oedema_risk_count 0.0" in metrics


def test_a_four_lesion_model_answers_its_risk_of_macular_oedema(tmp_path, small_png: bytes):
    checkpoint = tiny_checkpoint(tmp_path / "four.safetensors", exudates=True)
    write_referral(checkpoint, SCORE.to_dict(), OEDEMA.to_dict())
    with serve_in_thread(make_settings(checkpoint)) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        screening = segment(http, small_png, outputs="none").json()["screening"]
        metrics = http.get("/metrics").text
    risk = screening["macular_oedema"]
    assert 0 <= risk["score"] <= 1 and risk["operating_point"] == 0.3 and risk["at_risk"] == (risk["score"] >= 0.3)
    assert risk["validation"]["roc_auc"] == 0.95 and "one camera" in risk["validation"]["cameras"]
    assert screening["referral"]["operating_point"] == 0.4
    assert "redseg_macular_oedema_risk_count 1.0" in metrics


def test_an_ungradable_photograph_says_so_and_gets_no_referral_decision(tmp_path, small_rgb):
    checkpoint = tiny_checkpoint(tmp_path / "scored.safetensors", exudates=True)
    write_referral(checkpoint, SCORE.to_dict(), OEDEMA.to_dict())
    dark = png((small_rgb * 0.1).astype(np.uint8))
    with serve_in_thread(make_settings(checkpoint)) as base_url, httpx.Client(base_url=base_url, timeout=60) as http:
        screening = segment(http, dark, outputs="none").json()["screening"]
        metrics = http.get("/metrics").text
    assert screening["quality"]["gradable"] is False and "too dark" in screening["quality"]["reasons"]
    assert screening["referral"] is None and screening["macular_oedema"] is None
    assert screening["note"].startswith("ungradable (too dark") and screening["note"].endswith("no referral decision")
    assert 'redseg_ungradable_photographs_total{reason="too dark"} 1.0' in metrics


def test_viewer_and_docs_are_served_locally(client: httpx.Client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/viewer/viewer.js" in page.text and "http" not in page.text.split("<body>")[0]
    assert client.get("/static/viewer/viewer.js").status_code == 200
    docs = client.get("/docs").text
    assert "/static/docs/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    assert "cdn" not in client.get("/redoc").text.lower()
    description = client.get("/openapi.json").json()["info"]["description"]
    assert "not a grade" in description and "new vessels" in description
