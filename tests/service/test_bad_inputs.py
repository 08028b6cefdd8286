"""A table of bad (and unusual but valid) uploads: each gets its expected status, and the server stays up."""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import cv2
import httpx
import numpy as np
import pytest

from pydicom import uid

from tests.dicom_files import photograph
from tests.dicom_files import to_bytes as dicom_bytes
from tests.service.helpers import MAX_UPLOAD_BYTES, jpeg_claiming, png

BOUNDARY = "redsegtestboundary"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image: a decompression bomb's first bytes."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 4096))
        + png_chunk(b"IEND", b"")
    )


def encoded(extension: str, array: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(extension, array)
    assert ok
    return buffer.tobytes()


def multipart_head(field: str = "image", filename: str = "x.png", content_type: str = "image/png") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def raw_http(base_url: str, request: bytes) -> int:
    """Send raw bytes, return the status code of the answer."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request)
        answer = sock.recv(65536)
    return int(answer.split(b" ", 2)[1])


def upload(data: bytes, filename: str = "x.png", content_type: str = "image/png", field: str = "image", **params):
    def send(http: httpx.Client) -> int:
        return http.post("/segment", files={field: (filename, data, content_type)}, params=params).status_code

    return send


def huge_content_length(http: httpx.Client) -> int:
    request = (
        f"POST /segment HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    ).encode() + multipart_head()
    return raw_http(str(http.base_url), request)


def over_limit_chunked(http: httpx.Client) -> int:
    def body() -> Iterator[bytes]:
        yield multipart_head()
        for _ in range(2 * MAX_UPLOAD_BYTES // 65536 + 2):
            yield b"\0" * 65536

    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    return http.post("/segment", content=body(), headers=headers).status_code


def over_limit_with_length(http: httpx.Client) -> int:
    return upload(b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD_BYTES + 100_000), "big.jpg", "image/jpeg")(http)


def image_as_text_field(http: httpx.Client) -> int:
    files = {"other": ("a.txt", b"x", "text/plain")}
    return http.post("/segment", data={"image": "not a file"}, files=files).status_code


def missing_field(http: httpx.Client) -> int:
    return http.post("/segment", data={"comment": "forgot the image"}, files={"other": ("a.txt", b"x", "text/plain")}).status_code


def raw_jpeg_body(http: httpx.Client) -> int:
    return http.post("/segment", content=b"\xff\xd8\xff\xe0", headers={"Content-Type": "image/jpeg"}).status_code


def no_boundary(http: httpx.Client) -> int:
    return http.post("/segment", content=b"--x\r\n\r\n", headers={"Content-Type": "multipart/form-data"}).status_code


def multipart_without_closing_boundary(image: bytes) -> Callable[[httpx.Client], int]:
    def send(http: httpx.Client) -> int:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        response = http.post("/segment", content=multipart_head() + image, headers=headers)
        assert response.status_code != 400 or "truncated" in response.json()["detail"]
        return response.status_code

    return send


def get_segment(http: httpx.Client) -> int:
    return http.get("/segment").status_code


def dicom_cases(small_rgb: np.ndarray) -> dict[str, tuple[Callable[[httpx.Client], int], int]]:
    def dcm(ds, accept: str = "application/json", **params) -> Callable[[httpx.Client], int]:
        data = dicom_bytes(ds) if not isinstance(ds, bytes) else ds
        return lambda http: http.post(
            "/segment", files={"image": ("x.dcm", data, "application/dicom")}, params=params, headers={"Accept": accept}
        ).status_code

    report = photograph(small_rgb)
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = uid.BasicTextSRStorage
    jpeg2000 = photograph(small_rgb, "jpeg")
    jpeg2000.file_meta.TransferSyntaxUID = uid.JPEG2000
    bomb = photograph(small_rgb)
    bomb.Rows, bomb.Columns = 40000, 40000
    jpeg = dicom_bytes(photograph(small_rgb, "jpeg"))
    return {
        "DICOM structured report": (dcm(report), 415),
        "DICOM in JPEG 2000 (unsupported transfer syntax)": (dcm(jpeg2000), 415),
        "truncated DICOM": (dcm(jpeg[: len(jpeg) // 2]), 400),
        "DICOM preamble only": (dcm(jpeg[:132]), 400),
        "DICOM declaring 40000x40000 pixels": (dcm(bomb), 413),
        "DICOM SEG asked for a PNG upload, Accept: application/dicom": (
            lambda http: http.post(
                "/segment", files={"image": ("x.png", png(small_rgb), "image/png")}, headers={"Accept": "application/dicom"}
            ).status_code,
            406,
        ),
        "Accept: text/html": (dcm(jpeg, "text/html"), 406),
        "unknown seg_type": (dcm(jpeg, "application/dicom", seg_type="probabilistic"), 422),
        "DICOM OP, JPEG baseline YBR_FULL_422": (dcm(jpeg), 200),
        "DICOM OP, uncompressed RGB, as DICOM SEG": (dcm(photograph(small_rgb), "application/dicom"), 200),
        "DICOM VL photographic, as zip": (dcm(photograph(small_rgb, "rle", uid.VLPhotographicImageStorage), "application/zip"), 200),
    }


def build_cases(small_rgb: np.ndarray, sample: bytes) -> dict[str, tuple[Callable[[httpx.Client], int], int]]:
    small_png = png(small_rgb)
    small_jpeg = encoded(".jpg", cv2.cvtColor(small_rgb, cv2.COLOR_RGB2BGR))
    corrupt_png = bytearray(small_png)
    corrupt_png[len(corrupt_png) // 2] ^= 0xFF
    grey = cv2.cvtColor(small_rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([small_rgb, np.full(small_rgb.shape[:2], 200, np.uint8)])
    deep = small_rgb.astype(np.uint16) * 257
    return {
        "empty file": (upload(b""), 400),
        "text file as text/plain": (upload(b"hello, fundus\n" * 20, "notes.txt", "text/plain"), 415),
        "text file claiming image/png": (upload(b"hello, fundus\n" * 20), 415),
        "truncated JPEG": (upload(sample[: len(sample) // 2], "x.jpg", "image/jpeg"), 400),
        "JPEG header only": (upload(small_jpeg[:200], "x.jpg", "image/jpeg"), 400),
        "JPEG claiming 3000x3000, data ends early": (upload(jpeg_claiming(small_jpeg, 3000, 3000), "x.jpg", "image/jpeg"), 400),
        "corrupt PNG": (upload(bytes(corrupt_png)), 400),
        "truncated PNG": (upload(small_png[: len(small_png) // 2]), 400),
        "wrong field name": (upload(small_png, field="file"), 422),
        "missing field": (missing_field, 422),
        "image sent as a text field": (image_as_text_field, 422),
        "not multipart (raw JPEG body)": (raw_jpeg_body, 415),
        "form-urlencoded, not multipart": (lambda http: http.post("/segment", data={"image": "x"}).status_code, 415),
        "multipart without boundary": (no_boundary, 400),
        "multipart without closing boundary": (multipart_without_closing_boundary(small_png), 400),
        "huge Content-Length": (huge_content_length, 413),
        "over the byte limit, with Content-Length": (over_limit_with_length, 413),
        "over the byte limit, chunked": (over_limit_chunked, 413),
        "PNG declaring 100000x100000 pixels": (upload(png_declaring(100_000, 100_000)), 413),
        "PNG declaring 5000x3000 pixels": (upload(png_declaring(5000, 3000)), 413),
        "real 4000x4000 PNG (over max pixels)": (upload(png(np.zeros((4000, 4000), np.uint8))), 413),
        "unsupported content type (PDF)": (upload(b"%PDF-1.4\n", "x.pdf", "application/pdf"), 415),
        "GIF": (upload(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "x.gif", "image/gif"), 415),
        "WebP (not a contract format)": (upload(encoded(".webp", small_rgb), "x.webp", "image/webp"), 415),
        "threshold above 1": (upload(small_png, threshold_ma=1.5), 422),
        "threshold below 0": (upload(small_png, threshold_he=-0.1), 422),
        "threshold not a number": (upload(small_png, threshold_ma="high"), 422),
        "threshold NaN": (upload(small_png, threshold_ma="nan"), 422),
        "unknown outputs value": (upload(small_png, outputs="masks,heatmap"), 422),
        "GET /segment": (get_segment, 405),
        "1x1 PNG (too small for the model)": (upload(png(np.full((1, 1, 3), 200, np.uint8))), 422),
        "5x5 PNG": (upload(png(np.full((5, 5, 3), 200, np.uint8))), 422),
        "8x8 flat JPEG": (upload(encoded(".jpg", np.full((8, 8, 3), 90, np.uint8)), "x.jpg", "image/jpeg"), 422),
        "flat orange 1600x1200 PNG (not a fundus photograph)": (upload(png(np.full((1200, 1600, 3), (230, 120, 30), np.uint8))), 422),
        "3000x1 strip (not a fundus photograph)": (upload(png(np.full((1, 3000, 3), 150, np.uint8))), 422),
        "bearer token sent when none is needed": (
            lambda http: http.post(
                "/segment", files={"image": ("x.png", small_png, "image/png")}, headers={"Authorization": "Bearer x"}
            ).status_code,
            200,
        ),
        "no content type on the part": (upload(small_png, content_type=""), 200),
        "application/octet-stream": (upload(small_png, "x.bin", "application/octet-stream"), 200),
        "JPEG": (upload(small_jpeg, "x.jpg", "image/jpeg"), 200),
        "grey PNG": (upload(png(grey)), 200),
        "RGBA PNG": (upload(png(rgba)), 200),
        "16-bit PNG": (upload(png(deep)), 200),
        "16-bit grey TIFF": (upload(encoded(".tiff", (grey.astype(np.uint16) * 257)), "x.tif", "image/tiff"), 200),
        "BMP": (upload(encoded(".bmp", cv2.cvtColor(small_rgb, cv2.COLOR_RGB2BGR)), "x.bmp", "image/bmp"), 200),
    } | dicom_cases(small_rgb)


CASE_NAMES = list(build_cases(np.zeros((8, 8, 3), np.uint8), b"\xff\xd8\xff").keys())


@pytest.fixture(scope="module")
def cases(small_rgb: np.ndarray, sample_bytes: bytes):
    return build_cases(small_rgb, sample_bytes)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_bad_input_gets_its_status_and_the_server_stays_up(name: str, cases, server: str):
    send, expected = cases[name]
    with httpx.Client(base_url=server, timeout=60) as http:
        assert send(http) == expected
    with httpx.Client(base_url=server, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_errors_are_json_with_a_clear_detail(client: httpx.Client):
    response = client.post("/segment", files={"image": ("x.png", b"", "image/png")})
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "the uploaded image is empty"}
    response = client.post("/segment", files={"file": ("x.png", b"x", "image/png")})
    assert "no form field 'image'" in response.json()["detail"]


def test_bad_parameters_have_the_same_error_shape_with_a_list_of_problems(client: httpx.Client, small_png: bytes):
    response = client.post("/segment", files={"image": ("x.png", small_png, "image/png")}, params={"threshold_ma": 2})
    assert response.status_code == 422
    body = response.json()
    assert body["detail"].startswith("invalid request: query threshold_ma: ") and "less than or equal to 1" in body["detail"]
    assert body["errors"] == [{"loc": ["query", "threshold_ma"], "msg": "Input should be less than or equal to 1", "type": "less_than_equal"}]


def test_a_photograph_too_small_for_the_model_says_what_size_it_needs(client: httpx.Client):
    response = client.post("/segment", files={"image": ("x.png", png(np.full((1, 1, 3), 200, np.uint8)), "image/png")})
    assert response.status_code == 422
    assert response.json() == {"detail": "the photograph is too small for the model: its longer side is 1 pixels, and at "
                               "least 64 are needed (the model enlarges a photograph at most 4 times); send the camera's "
                               "original photograph"}
    assert 'redseg_requests_rejected_total{reason="too_small"}' in client.get("/metrics").text


def test_at_least_fifteen_kinds_of_bad_input():
    assert len(CASE_NAMES) >= 15
