"""The clinic's loop against a real PACS: Debian's Orthanc (DICOM and DICOMweb on loopback) knows RedSeg's
node as a modality. A photograph stored in Orthanc is sent to the node (REST /modalities/redseg/store), and
its SEG and SR come back into Orthanc's study; they must refer to the photograph, the SEG's frames equal the
/segment answer's masks and the SR's counts and referral score its screening summary. And the failure path:
the node's destination away, the results kept and sent when it is back, nothing lost.

Skipped when Orthanc or its DICOMweb plugin is not installed, unless REDSEG_REQUIRE_DICOM_TOOLS=1 (CI sets it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from model.checkpoint import write_referral
from model.config import LESIONS
from model.formats.dicom_sr import report_values
from service.dicom_node.node import DicomNode
from service.dicom_node.settings import NodeSettings
from tests.dicom_files import dciodvfy_errors, photograph, sample_rgb, to_bytes
from tests.processes import free_port, running, wait_until
from tests.service.helpers import make_settings, serve_in_thread, tiny_checkpoint
from tests.service.test_dicom_node import GRADABLE, c_store
from tests.service.test_orthanc import DICOMWEB_PLUGIN, ORTHANC, wado  # skips this module without Orthanc
from tests.service.test_screening_answer import SCORE
from tests.service.test_segment import decode_png

pytestmark = pytest.mark.slow  # a real Orthanc


@pytest.fixture(scope="module")
def scored_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("scored") / "tiny.safetensors")
    write_referral(checkpoint, SCORE.to_dict())
    return checkpoint


@contextmanager
def orthanc(folder: Path, http_port: int, dicom_port: int, redseg_port: int, lua: str | None = None) -> Iterator[str]:
    """Orthanc on loopback with its DICOM port open, knowing RedSeg's node as the modality 'redseg' (and running
    the ``lua`` script)."""
    assert ORTHANC and DICOMWEB_PLUGIN.exists(), "REDSEG_REQUIRE_DICOM_TOOLS=1 but Orthanc/orthanc-dicomweb is missing"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "redseg-loop", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomServerEnabled": True, "DicomAet": "ORTHANC", "DicomPort": dicom_port,
        "DicomModalities": {"redseg": {"AET": "REDSEG", "Host": "127.0.0.1", "Port": redseg_port, "Timeout": 120}},
        "Plugins": [str(DICOMWEB_PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    if lua is not None:
        (folder / "redseg.lua").write_text(lua)
        config["LuaScripts"] = [str(folder / "redseg.lua")]
    (folder / "orthanc.json").write_text(json.dumps(config))
    with running([ORTHANC, str(folder / "orthanc.json")], http_port, "/system", 60, folder / "orthanc.log") as url:
        yield url


@contextmanager
def redseg_node(checkpoint: Path, outbox: Path, **destination) -> Iterator[DicomNode]:
    settings = NodeSettings(ae_title="REDSEG", port=destination.pop("port"), allowed_callers=["ORTHANC"], outbox=outbox,
                            metrics_port=0, retry_interval_s=0.5, send_timeout_s=10, **destination)
    node = DicomNode(make_settings(checkpoint), settings)
    try:
        node.start(ready_timeout_s=120)
        yield node
    finally:
        node.stop()


def found_series(pacs: httpx.Client, study: str, modality: str) -> list[tuple[str, str]]:
    """(series, instance) of each instance of ``modality`` in the study, found by QIDO-RS."""
    series = [item["0020000E"]["Value"][0] for item in
              pacs.get(f"/dicom-web/studies/{study}/series", params={"Modality": modality}).json()]
    return [(one, item["00080018"]["Value"][0]) for one in series
            for item in pacs.get(f"/dicom-web/studies/{study}/series/{one}/instances").json()]


def fetch_results(pacs: httpx.Client, study: str) -> tuple[bytes, bytes]:
    """The SEG and SR of the study, once both are there."""
    wait_until(lambda: found_series(pacs, study, "SEG") and found_series(pacs, study, "SR"), 60, "the SEG and SR in Orthanc")
    ((seg_series, seg_instance),) = found_series(pacs, study, "SEG")
    ((sr_series, sr_instance),) = found_series(pacs, study, "SR")
    return wado(pacs, study, seg_series, seg_instance), wado(pacs, study, sr_series, sr_instance)


def test_orthanc_sends_a_photograph_to_redseg_and_gets_its_seg_and_sr_back(scored_checkpoint: Path, tmp_path):
    node_port, dicom_port = free_port(), free_port()
    photo = photograph(sample_rgb(*GRADABLE), "jpeg")
    study, series, instance = photo.StudyInstanceUID, photo.SeriesInstanceUID, photo.SOPInstanceUID
    with (orthanc(tmp_path / "orthanc", free_port(), dicom_port, node_port) as url,
          redseg_node(scored_checkpoint, tmp_path / "outbox", port=node_port, destination_ae="ORTHANC",
                      destination_port=dicom_port),
          httpx.Client(base_url=url, timeout=120) as pacs):
        stored = pacs.post("/instances", content=to_bytes(photo))
        assert stored.status_code == 200, stored.text
        sent = pacs.post("/modalities/redseg/store", json={"Resources": [stored.json()["ID"]], "Synchronous": True})
        assert sent.status_code == 200, sent.text
        seg_bytes, sr_bytes = fetch_results(pacs, study)
        fetched = wado(pacs, study, series, instance)
    with serve_in_thread(make_settings(scored_checkpoint)) as api, httpx.Client(base_url=api, timeout=120) as client:
        answer = client.post("/segment", files={"image": ("photo.dcm", fetched, "application/dicom")}).json()

    assert dciodvfy_errors(seg_bytes, tmp_path) == [] and dciodvfy_errors(sr_bytes, tmp_path, iod="ComprehensiveSR") == []
    seg, sr = pydicom.dcmread(BytesIO(seg_bytes)), pydicom.dcmread(BytesIO(sr_bytes))
    assert seg.PatientID == sr.PatientID == photo.PatientID and len({series, seg.SeriesInstanceUID, sr.SeriesInstanceUID}) == 3
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == instance
    values, screening = report_values(sr), answer["screening"]
    assert values["photograph"]["source"] == [instance]
    for index, lesion in enumerate(LESIONS):
        assert np.array_equal(seg.pixel_array[index] > 0, decode_png(answer["lesions"][lesion]["mask_png"]) > 0)
        assert values[lesion]["segmentation"] == seg.SOPInstanceUID
        assert values[lesion]["Number of lesions"] == screening["lesions"][lesion]["count"]
        assert values[lesion]["Area"] == screening["lesions"][lesion]["area_pixels"]
    referral = screening["referral"]
    assert referral is not None, screening  # the checkpoint carries a score and the photograph is gradable
    assert values["photograph"]["Referral score"] == pytest.approx(referral["score"], rel=1e-9)
    assert values["photograph"]["CAD Operating Point"] == referral["operating_point"]
    call = "Refer: score at or above the operating point" if referral["refer"] else "Below the referral operating point"
    assert values["photograph"]["Referral call"] == [call]


def test_results_wait_for_orthanc_and_reach_it_when_it_is_back(scored_checkpoint: Path, tmp_path):
    """STOW-RS to an Orthanc that is not up yet: the C-STORE is still answered (the results are on disk), the
    sends fail and are retried, and once Orthanc is up the SEG and SR are in it."""
    http_port, node_port = free_port(), free_port()
    photo = photograph(sample_rgb(*GRADABLE), "jpeg")
    with redseg_node(scored_checkpoint, tmp_path / "outbox", port=node_port,
                     stow_url=f"http://127.0.0.1:{http_port}/dicom-web") as node:
        assert c_store(node.port, photo).Status == 0x0000
        wait_until(lambda: node.metrics.send_failures._value.get() >= 2, 30, "failed sends while Orthanc is away")
        assert node.outbox.count() == 2
        with orthanc(tmp_path / "orthanc", http_port, free_port(), node_port) as url, httpx.Client(base_url=url, timeout=60) as pacs:
            seg_bytes, sr_bytes = fetch_results(pacs, photo.StudyInstanceUID)
        wait_until(lambda: node.outbox.count() == 0, 10, "the outbox emptied")
        assert node.metrics.stored._value.get() == 2
    seg, sr = pydicom.dcmread(BytesIO(seg_bytes)), pydicom.dcmread(BytesIO(sr_bytes))
    assert report_values(sr)["MA"]["segmentation"] == seg.SOPInstanceUID


def test_orthanc_routes_new_photographs_with_the_docs_lua_script(scored_checkpoint: Path, tmp_path):
    """docs/dicom.md's auto-routing script: a stored photograph goes to RedSeg, and what comes back does not."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "dicom.md").read_text()
    lua = docs.split("```lua\n", 1)[1].split("```", 1)[0]
    node_port, dicom_port = free_port(), free_port()
    photo = photograph(sample_rgb(*GRADABLE), "jpeg")
    with (orthanc(tmp_path / "orthanc", free_port(), dicom_port, node_port, lua) as url,
          redseg_node(scored_checkpoint, tmp_path / "outbox", port=node_port, destination_ae="ORTHANC",
                      destination_port=dicom_port) as node,
          httpx.Client(base_url=url, timeout=60) as pacs):
        assert pacs.post("/instances", content=to_bytes(photo)).status_code == 200
        fetch_results(pacs, photo.StudyInstanceUID)
        time.sleep(2)  # had the SEG or SR been routed back, the node would have refused them by now
        assert node.metrics.received._value.get() == 1
        series = pacs.get("/series", params={"expand": ""}).json()
        assert sorted(one["MainDicomTags"]["Modality"] for one in series) == ["OP", "SEG", "SR"]
