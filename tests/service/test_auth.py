"""The optional bearer token on POST /segment; probes and metrics stay open."""

from __future__ import annotations

import httpx
import pytest

from tests.service.helpers import make_settings, segment, serve_in_thread

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def secured(checkpoint) -> str:
    with serve_in_thread(make_settings(checkpoint, api_token=TOKEN)) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN},
     {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}],
    ids=["none", "wrong token", "basic scheme", "no scheme", "token plus a char", "empty token"],
)
def test_segment_needs_the_token(secured: str, small_png: bytes, headers: dict):
    with httpx.Client(base_url=secured, timeout=30, headers=headers) as http:
        response = segment(http, small_png)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"detail": "missing or wrong bearer token"}
        assert http.get("/healthz").status_code == 200


def test_the_right_token_is_let_in(secured: str, small_png: bytes):
    with httpx.Client(base_url=secured, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert segment(http, small_png).status_code == 200


def test_probes_metrics_and_docs_need_no_token(secured: str):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert httpx.get(f"{secured}{path}").status_code == 200, path


def test_auth_is_checked_before_the_body_is_read(secured: str):
    response = httpx.post(f"{secured}/segment", files={"image": ("x.png", b"garbage", "image/png")})
    assert response.status_code == 401


def test_without_a_token_setting_no_header_is_needed(client: httpx.Client, small_png: bytes):
    assert segment(client, small_png).status_code == 200
