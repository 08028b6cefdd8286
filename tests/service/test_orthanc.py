"""Integration with a real PACS: Debian's Orthanc with its DICOMweb plugin, on loopback.

An OP photograph is stored in Orthanc (REST), fetched back over DICOMweb (WADO-RS), sent to
/segment for a DICOM SEG, the SEG stored in Orthanc (STOW-RS), found again (QIDO-RS) and read
back: it must refer to the photograph and its frames must equal the masks of the JSON answer.

Skipped when Orthanc or its DICOMweb plugin is not installed (apt-get install orthanc
orthanc-dicomweb), unless REDSEG_REQUIRE_DICOM_TOOLS=1 (CI sets it): then it fails.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from model.config import LESIONS
from tests.dicom_files import REQUIRE_TOOLS, dciodvfy_errors, photograph, sample_rgb, to_bytes
from tests.processes import free_port, running
from tests.service.test_segment import decode_png

ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOM_PART = 'multipart/related; type="application/dicom"'

if (ORTHANC is None or not DICOMWEB_PLUGIN.exists()) and not REQUIRE_TOOLS:
    pytest.skip("Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)",
                allow_module_level=True)

pytestmark = pytest.mark.slow  # a real Orthanc


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Orthanc on a free loopback port with its own storage; no DICOM port, no remote access."""
    assert ORTHANC and DICOMWEB_PLUGIN.exists(), "REDSEG_REQUIRE_DICOM_TOOLS=1 but Orthanc/orthanc-dicomweb is missing"
    tmp = tmp_path_factory.mktemp("orthanc")
    port = free_port()
    config = {
        "Name": "redseg-test", "StorageDirectory": str(tmp / "db"), "IndexDirectory": str(tmp / "db"),
        "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (tmp / "orthanc.json").write_text(json.dumps(config))
    with running([ORTHANC, str(tmp / "orthanc.json")], port, "/system", 60, tmp / "orthanc.log") as url:
        yield url


def dicom_parts(response: httpx.Response) -> list[bytes]:
    """The application/dicom parts of a DICOMweb multipart/related answer."""
    assert response.status_code == 200, response.text
    head = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + response.content)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def stow(pacs: httpx.Client, data: bytes) -> None:
    boundary = "redseg-stow-boundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    response = pacs.post("/dicom-web/studies", content=body,
                         headers={"Content-Type": f"{DICOM_PART}; boundary={boundary}", "Accept": "application/dicom+json"})
    assert response.status_code == 200, response.text


def wado(pacs: httpx.Client, study: str, series: str, instance: str) -> bytes:
    url = f"/dicom-web/studies/{study}/series/{series}/instances/{instance}"
    (part,) = dicom_parts(pacs.get(url, headers={"Accept": f"{DICOM_PART}; transfer-syntax=*"}))
    return part


def test_photograph_from_orthanc_to_redseg_and_its_seg_back(orthanc: str, client: httpx.Client, tmp_path):
    photo = photograph(sample_rgb(), "jpeg")
    study, series, instance = photo.StudyInstanceUID, photo.SeriesInstanceUID, photo.SOPInstanceUID
    with httpx.Client(base_url=orthanc, timeout=60) as pacs:
        assert pacs.post("/instances", content=to_bytes(photo)).status_code == 200
        fetched = wado(pacs, study, series, instance)
        assert pydicom.dcmread(BytesIO(fetched)).SOPInstanceUID == instance

        files = {"image": ("photo.dcm", fetched, "application/dicom")}
        answer = client.post("/segment", files=files).json()
        seg_bytes = client.post("/segment", files=files, headers={"Accept": "application/dicom"}).content
        stow(pacs, seg_bytes)

        found = pacs.get(f"/dicom-web/studies/{study}/series", params={"Modality": "SEG"}).json()
        (seg_series,) = [item["0020000E"]["Value"][0] for item in found]
        (seg_instance,) = [item["00080018"]["Value"][0] for item in
                           pacs.get(f"/dicom-web/studies/{study}/series/{seg_series}/instances").json()]
        stored = wado(pacs, study, seg_series, seg_instance)
        seg = pydicom.dcmread(BytesIO(stored))

    assert dciodvfy_errors(stored, tmp_path) == []  # as Orthanc keeps and serves it
    assert seg.Modality == "SEG" and seg_series != series and seg.PatientID == photo.PatientID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == series
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == instance
    for index, lesion in enumerate(LESIONS):
        assert np.array_equal(seg.pixel_array[index] > 0, decode_png(answer["lesions"][lesion]["mask_png"]) > 0)
