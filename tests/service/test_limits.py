"""Connection limits, from outside, on the main test server (redseg-serve, as `make serve` runs it):
oversized bodies answered 413 that every kind of client can read, with flat memory;
slow bodies cut off with 408; oversized request heads refused."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from tests.service.helpers import BODY_TIMEOUT_S, MAX_UPLOAD_BYTES

LIMIT = MAX_UPLOAD_BYTES
OVERSIZED = 40 * 2**20


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "limitsboundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 2**20


def test_urllib_reads_the_413_of_an_oversized_upload_and_memory_stays_flat(server_process):
    url, process = server_process
    body, content_type = multipart(b"\xff\xd8\xff" + bytes(OVERSIZED))
    before = rss_mb(process)
    request = urllib.request.Request(f"{url}/segment", data=body, headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert "larger than the limit" in json.loads(answer.value.read())["detail"]
    assert rss_mb(process) - before < 20  # a 40 MB body went through, a chunk at a time


def test_requests_reads_the_413_with_a_file_upload_and_a_chunked_body(server_process):
    url, _ = server_process
    answer = requests.post(f"{url}/segment", files={"image": ("big.jpg", bytes(8 * LIMIT), "image/jpeg")}, timeout=60)
    assert answer.status_code == 413 and "larger than the limit" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:
        body, _ = multipart(bytes(8 * LIMIT))
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    _, content_type = multipart(b"")
    answer = requests.post(f"{url}/segment", data=chunks(), headers={"Content-Type": content_type}, timeout=60)
    assert answer.status_code == 413


def test_curl_with_100_continue_gets_413_before_sending_the_body(server_process, tmp_path: Path):
    url, _ = server_process
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(4 * LIMIT))
    result = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "-H", "Expect: 100-continue",
         "-F", f"image=@{big};type=image/jpeg", f"{url}/segment"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    status, uploaded = result.stdout.split()
    assert status == "413"
    assert float(uploaded) < LIMIT  # curl waited for 100 Continue, got the 413 and sent no body


def raw_exchange(url: str, chunks: Iterator[bytes], pause_s: float = 0.0) -> bytes:
    """Send ``chunks`` (pausing between them) and return what the server answers, or b'' on a reset."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(pause_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: read what it said
        try:
            return sock.recv(65536)
        except ConnectionResetError:
            return b""


@pytest.mark.slow  # waits out the 3 s body timeout
def test_a_body_dripped_slowly_gets_408_and_its_connection_is_closed(server_process):
    url, _ = server_process
    body, content_type = multipart(bytes(5000))
    head = (
        f"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    drips = (body[start : start + 10] for start in range(0, len(body), 10))
    answer = raw_exchange(url, iter([head, *drips]), pause_s=0.25)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert f"took longer than {BODY_TIMEOUT_S} s".encode() in answer
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200


def test_an_oversized_request_head_is_refused_with_flat_memory(server_process):
    url, process = server_process
    before = rss_mb(process)
    filler = (f"X-Filler-{i}: {'a' * 1000}\r\n".encode() for i in range(16_000))  # 16 MB of headers
    answer = raw_exchange(url, iter([b"GET /healthz HTTP/1.1\r\nHost: x\r\n", *filler, b"\r\n"]))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 ")
    assert rss_mb(process) - before < 20
    assert requests.get(f"{url}/healthz", headers={"X-Ok": "a" * 4000}, timeout=10).status_code == 200
