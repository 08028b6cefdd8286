"""The SEG and the screening summary's SR together over HTTP, as DICOMweb sends instances (multipart/related)."""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO

import httpx
import numpy as np
import pydicom
import pytest

from model.config import LESIONS
from model.formats.dicom_sr import report_values
from service.errors import ServiceError
from service.responses import AnswerFormat, negotiate
from tests.dicom_files import dciodvfy_errors, photograph, sample_rgb, to_bytes
from tests.service.test_segment import decode_png

PARTS = 'multipart/related; type="application/dicom"'


def related_parts(response: httpx.Response) -> list[bytes]:
    """The application/dicom parts of a multipart/related answer."""
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    assert all(part.get_content_type() == "application/dicom" for part in message.iter_parts())
    return [part.get_payload(decode=True) for part in message.iter_parts()]


@pytest.fixture(scope="module")
def dicom_photo() -> bytes:
    return to_bytes(photograph(sample_rgb(), "jpeg"))


def post(client: httpx.Client, data: bytes, accept: str, **params) -> httpx.Response:
    return client.post("/segment", files={"image": ("photo.dcm", data, "application/dicom")}, params=params,
                       headers={"Accept": accept})


@pytest.mark.parametrize("accept", [PARTS, "multipart/related; type=application/dicom", 'Multipart/Related;Type="application/dicom";q=0.9'])
def test_negotiates_the_dicomweb_answer(accept):
    assert negotiate(accept) is AnswerFormat.DICOM_PARTS
    assert negotiate("application/dicom") is AnswerFormat.DICOM  # the single SEG answer stays


@pytest.mark.parametrize("accept", ["multipart/related", 'multipart/related; type="application/dicom+xml"'])
def test_other_multiparts_are_not_offered(accept):
    with pytest.raises(ServiceError) as error:
        negotiate(accept)
    assert error.value.status == 406 and PARTS in error.value.detail


def test_seg_and_sr_come_back_together(client: httpx.Client, dicom_photo: bytes, tmp_path):
    as_json = post(client, dicom_photo, "application/json").json()
    response = post(client, dicom_photo, PARTS)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(f"{PARTS}; boundary=")
    seg_bytes, sr_bytes = related_parts(response)
    assert dciodvfy_errors(seg_bytes, tmp_path) == []
    assert dciodvfy_errors(sr_bytes, tmp_path, iod="ComprehensiveSR") == []
    source, seg, sr = (pydicom.dcmread(BytesIO(data)) for data in (dicom_photo, seg_bytes, sr_bytes))
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert source.StudyInstanceUID == seg.StudyInstanceUID == sr.StudyInstanceUID
    values = report_values(sr)
    screening = as_json["screening"]
    for index, lesion in enumerate(LESIONS):
        assert np.array_equal(seg.pixel_array[index] > 0, decode_png(as_json["lesions"][lesion]["mask_png"]) > 0)
        assert values[lesion]["segmentation"] == seg.SOPInstanceUID
        assert values[lesion]["Number of lesions"] == screening["lesions"][lesion]["count"]
        assert values[lesion]["Area"] == screening["lesions"][lesion]["area_pixels"]
    assert values["photograph"]["source"] == [source.SOPInstanceUID]
    assert values["photograph"]["Gradable share of the field of view"] == pytest.approx(screening["field_of_view"]["gradable_fraction"])
    assert screening["disclaimer"] in values["comments"]


def test_the_single_seg_answer_stays_as_it_was(client: httpx.Client, dicom_photo: bytes, small_png: bytes):
    single = post(client, dicom_photo, "application/dicom")
    assert single.status_code == 200 and single.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(BytesIO(single.content)).Modality == "SEG"
    png = client.post("/segment", files={"image": ("x.png", small_png, "image/png")}, headers={"Accept": PARTS})
    assert png.status_code == 406 and "DICOM upload" in png.json()["detail"]


def test_the_sr_refers_to_a_fractional_seg_too(client: httpx.Client, dicom_photo: bytes, tmp_path):
    seg_bytes, sr_bytes = related_parts(post(client, dicom_photo, PARTS, seg_type="fractional"))
    seg = pydicom.dcmread(BytesIO(seg_bytes))
    assert seg.SegmentationType == "FRACTIONAL"
    assert dciodvfy_errors(sr_bytes, tmp_path, iod="ComprehensiveSR") == []
    assert report_values(pydicom.dcmread(BytesIO(sr_bytes)))["HE"]["segmentation"] == seg.SOPInstanceUID


def test_a_four_lesion_model_answers_a_segment_per_lesion(dicom_photo: bytes, tmp_path):
    """The SEG's segments are the model's lesions in its order, its frames the answer's masks; the SR reports the
    lesions the summary carries, each on its own segment."""
    from model.formats.dicom_seg import segment_numbers
    from tests.service.helpers import make_settings, serve_in_thread, tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "four.safetensors", exudates=True)
    with serve_in_thread(make_settings(checkpoint)) as url, httpx.Client(base_url=url, timeout=60) as http:
        as_json = post(http, dicom_photo, "application/json").json()
        response = post(http, dicom_photo, PARTS)
    assert response.status_code == 200, response.text
    seg_bytes, sr_bytes = related_parts(response)
    assert dciodvfy_errors(seg_bytes, tmp_path) == []
    assert dciodvfy_errors(sr_bytes, tmp_path, iod="ComprehensiveSR") == []
    seg, sr = (pydicom.dcmread(BytesIO(data)) for data in (seg_bytes, sr_bytes))
    assert segment_numbers(seg) == {"MA": 1, "HE": 2, "EX": 3, "SE": 4}
    for lesion, number in segment_numbers(seg).items():
        assert np.array_equal(seg.pixel_array[number - 1] > 0, decode_png(as_json["lesions"][lesion]["mask_png"]) > 0)
    values = report_values(sr)
    assert list(as_json["screening"]["lesions"]) == ["MA", "HE", "EX", "SE"]
    for lesion, found in as_json["screening"]["lesions"].items():
        assert values[lesion]["segmentation"] == seg.SOPInstanceUID
        assert values[lesion]["Number of lesions"] == found["count"] and values[lesion]["Area"] == found["area_pixels"]
