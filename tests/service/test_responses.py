"""The answer's formats: JSON (base64 PNGs) or a zip of files, chosen by the Accept header."""

from __future__ import annotations

import base64
import json
import zipfile
from io import BytesIO
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.errors import ServiceError
from service.responses import SUMMARY_FILE, AnswerFormat, negotiate
from tests.service.helpers import make_settings
from tests.service.test_segment import decode_png

JSON, ZIP, DICOM = AnswerFormat.JSON, AnswerFormat.ZIP, AnswerFormat.DICOM


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, JSON), ("", JSON), ("*/*", JSON), ("application/*", JSON), ("application/json", JSON),
        ("application/zip", ZIP), ("application/dicom", DICOM), ("text/html, application/zip;q=0.9", ZIP),
        ("application/json;q=0.5, application/zip", ZIP), ("application/zip;q=0, */*;q=0.1", JSON),
        ("APPLICATION/DICOM; q=1", DICOM), ("text/html, */*;q=0.8", JSON),
    ],
)
def test_negotiate(accept, expected):
    assert negotiate(accept) is expected


@pytest.mark.parametrize("accept", ["text/html", "image/png", "application/zip;q=0", "application/xml, text/csv"])
def test_formats_not_offered_are_406(accept):
    with pytest.raises(ServiceError) as error:
        negotiate(accept)
    assert error.value.status == 406 and "application/zip" in error.value.detail


def post(client: httpx.Client, data: bytes, accept: str, **params) -> httpx.Response:
    files = {"image": ("photo.png", data, "image/png")}
    return client.post("/segment", files=files, params=params, headers={"Accept": accept})


def test_zip_answer_holds_the_json_answer_and_the_pngs(client: httpx.Client, small_png: bytes):
    outputs = "masks,probabilities,overlay"
    as_json = post(client, small_png, "application/json", outputs=outputs)
    as_zip = post(client, small_png, "application/zip", outputs=outputs)
    assert as_zip.status_code == 200 and as_zip.headers["content-type"] == "application/zip"
    assert 'filename="redseg-result.zip"' in as_zip.headers["content-disposition"]
    archive = zipfile.ZipFile(BytesIO(as_zip.content))
    names = {SUMMARY_FILE, "overlay.png"} | {f"{l}_{k}.png" for l in ("MA", "HE") for k in ("mask", "probability")}
    assert set(archive.namelist()) == names
    body, summary = as_json.json(), json.loads(archive.read(SUMMARY_FILE))
    assert set(summary) == set(body)  # the same document, whatever fields it has
    for field in set(body) - {"lesions", "overlay_png", "timings"}:
        assert summary[field] == body[field]
    assert summary["overlay_png"] is None
    for lesion, result in body["lesions"].items():
        unpacked = summary["lesions"][lesion]
        assert unpacked["mask_png"] is None and unpacked["probability_png"] is None
        assert {k: v for k, v in unpacked.items() if not k.endswith("_png")} == {
            k: v for k, v in result.items() if not k.endswith("_png")
        }
        for kind, field in (("mask", "mask_png"), ("probability", "probability_png")):
            assert archive.read(f"{lesion}_{kind}.png") == base64.b64decode(result[field])
    assert decode_png(body["overlay_png"]).shape == (80, 120, 3)


def test_zip_carries_only_the_outputs_asked_for(client: httpx.Client, small_png: bytes):
    archive = zipfile.ZipFile(BytesIO(post(client, small_png, "application/zip", outputs="none").content))
    assert archive.namelist() == [SUMMARY_FILE]


def test_unoffered_format_is_406_before_any_work(client: httpx.Client, small_png: bytes):
    response = post(client, small_png, "text/html")
    assert response.status_code == 406 and "application/json" in response.json()["detail"]


def test_openapi_documents_the_answer_formats(checkpoint: Path):
    spec = create_app(make_settings(checkpoint)).openapi()
    answers = spec["paths"]["/segment"]["post"]["responses"]
    assert set(answers["200"]["content"]) == {"application/json", "application/zip", "application/dicom",
                                              'multipart/related; type="application/dicom"'}
    assert "406" in answers


def test_json_body_splices_each_file_as_base64_into_its_field():
    from service.responses import json_body
    from service.schemas import ImageInfo, LesionResult, ModelInfo, SegmentResponse, Timings
    from service.schemas import FieldOfViewResult, QualityResult, ScreeningResult

    quality = QualityResult(gradable=True, reasons=[], field_share=1.0, brightness=150, saturated_share=0, focus=0.1,
                            usable_share=1.0)
    screening = ScreeningResult(lesions={}, field_of_view=FieldOfViewResult(area_pixels=4, fraction_of_image=1.0,
                                gradable_fraction=1.0), quality=quality, referral=None)
    stats = dict(threshold=0.5, area_pixels=3, area_fraction=0.1, components=1)
    answer = SegmentResponse(
        model=ModelInfo(name="m", version="1", sha256="0"),
        image=ImageInfo(width=2, height=2),
        lesions={"MA": LesionResult(**stats), "HE": LesionResult(**stats)},
        screening=screening,
        timings=Timings(decode_s=0, queue_wait_s=0, infer_s=0, encode_s=0, total_s=0),
    )
    files = {"MA_mask.png": b"\x89PNG ma \x00\xff", "HE_probability.png": b"@he@", "overlay.png": bytes(range(256))}
    body = json.loads(json_body(answer, files))
    assert body["lesions"]["MA"]["mask_png"] == base64.b64encode(files["MA_mask.png"]).decode()
    assert body["lesions"]["HE"]["probability_png"] == base64.b64encode(b"@he@").decode()
    assert body["overlay_png"] == base64.b64encode(bytes(range(256))).decode()
    assert body["lesions"]["MA"]["probability_png"] is None and body["lesions"]["HE"]["mask_png"] is None
    without_files = answer.model_dump(mode="json")
    for lesion in ("MA", "HE"):
        for field in ("mask_png", "probability_png"):
            body["lesions"][lesion][field] = None
    body["overlay_png"] = None
    assert body == without_files
