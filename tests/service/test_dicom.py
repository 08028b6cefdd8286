"""DICOM through the service: a DICOM photograph in, JSON or a DICOM SEG out."""

from __future__ import annotations

import json
from io import BytesIO

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest

from model.config import LESIONS
from tests.dicom_files import dciodvfy_errors, photograph, sample_rgb, to_bytes
from tests.service.test_segment import decode_png


@pytest.fixture(scope="module")
def dicom_photo() -> bytes:
    return to_bytes(photograph(sample_rgb(), "jpeg"))


def post(client: httpx.Client, data: bytes, accept: str = "application/json", **params) -> httpx.Response:
    files = {"image": ("photo.dcm", data, "application/dicom")}
    return client.post("/segment", files=files, params=params, headers={"Accept": accept})


def test_dicom_seg_answer_matches_the_json_masks(client: httpx.Client, dicom_photo: bytes, tmp_path):
    as_json = post(client, dicom_photo)
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["image"] == {"width": 120, "height": 80}
    params = {"threshold_ma": 0.3, "threshold_he": 0.3}
    as_json = post(client, dicom_photo, **params).json()
    as_seg = post(client, dicom_photo, "application/dicom", **params)
    assert as_seg.status_code == 200 and as_seg.headers["content-type"] == "application/dicom"
    assert dciodvfy_errors(as_seg.content, tmp_path) == []
    seg = pydicom.dcmread(BytesIO(as_seg.content))
    source = pydicom.dcmread(BytesIO(dicom_photo))
    assert seg.SegmentationType == "BINARY" and seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    for index, lesion in enumerate(LESIONS):
        mask = decode_png(as_json["lesions"][lesion]["mask_png"]) > 0
        assert np.array_equal(seg.pixel_array[index] > 0, mask)
    screening = json.loads(as_seg.headers["x-redseg-screening"])  # a SEG has no place for the summary
    assert screening == as_json["screening"] and screening["lesions"]


def test_fractional_seg_carries_the_probabilities(client: httpx.Client, dicom_photo: bytes, tmp_path):
    as_json = post(client, dicom_photo).json()
    as_seg = post(client, dicom_photo, "application/dicom", seg_type="fractional")
    assert dciodvfy_errors(as_seg.content, tmp_path) == []
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(BytesIO(as_seg.content)))
    assert seg.SegmentationType == "FRACTIONAL"
    source_uid = pydicom.dcmread(BytesIO(dicom_photo)).SOPInstanceUID
    values = seg.get_pixels_by_source_instance([source_uid], combine_segments=False, rescale_fractional=True)[0]
    for index, lesion in enumerate(LESIONS):
        probability = decode_png(as_json["lesions"][lesion]["probability_png"]) / 65535.0
        np.testing.assert_allclose(values[..., index], probability, atol=0.5 / 255 + 1e-4)


def test_dicom_answer_for_a_png_upload_is_406(client: httpx.Client, small_png: bytes):
    response = client.post("/segment", files={"image": ("x.png", small_png, "image/png")}, headers={"Accept": "application/dicom"})
    assert response.status_code == 406 and "DICOM upload" in response.json()["detail"]


def test_no_patient_data_reaches_logs_or_metrics(checkpoint, dicom_photo: bytes, caplog):
    import logging

    from tests.dicom_files import PATIENT
    from tests.service.helpers import make_settings, serve_in_thread

    broken = dicom_photo[: len(dicom_photo) // 2]
    caplog.set_level(logging.DEBUG)
    with serve_in_thread(make_settings(checkpoint)) as url, httpx.Client(base_url=url, timeout=60) as http:
        statuses = [post(http, data, accept).status_code for data, accept in
                    [(dicom_photo, "application/json"), (dicom_photo, "application/dicom"), (broken, "application/dicom")]]
        metrics = http.get("/metrics").text
    assert statuses == [200, 200, 400]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records  # the log was captured, so its check below means something
    for value in (PATIENT["PatientName"], PATIENT["PatientName"].split("^")[0], PATIENT["PatientID"], PATIENT["PatientBirthDate"]):
        assert value not in logged and value not in metrics
