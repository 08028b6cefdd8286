"""redseg-dicom-node against in-process DICOM peers: a photograph in by C-STORE, its SEG and SR out to the
destination; refused callers; a full queue answered Out of Resources; results kept while the destination is
away and sent when it is back; no patient attribute in the log or the metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from prometheus_client import generate_latest
from pydicom import uid
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from model.checkpoint import write_referral
from model.formats.dicom_sr import report_values
from service.dicom_node.node import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, DicomNode
from service.dicom_node.outbox import Outbox
from service.dicom_node.settings import NodeSettings
from tests.dicom_files import PATIENT, dciodvfy_errors, photograph, sample_rgb
from tests.processes import free_port, wait_until
from tests.service.helpers import make_settings, tiny_checkpoint
from tests.service.test_screening_answer import SCORE

CALLER = "ORTHANC"
GRADABLE = (240, 160)
"""A size of the sample photograph that is gradable (smaller JPEG copies blur below the focus limit)."""


@pytest.fixture(scope="module")
def scored_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkpoint = tiny_checkpoint(tmp_path_factory.mktemp("scored") / "tiny.safetensors")
    write_referral(checkpoint, SCORE.to_dict())
    return checkpoint


class Pacs:
    """A Storage SCP that keeps what it is sent (the SEG and SR), on a fixed port; it can be stopped and started."""

    def __init__(self, port: int):
        self.port = port
        self.received: list[Dataset] = []
        self.server = None

    def start(self) -> None:
        ae = AE(ae_title="PACS")
        for sop_class in (uid.SegmentationStorage, uid.ComprehensiveSRStorage):
            ae.add_supported_context(sop_class)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: evt.Event) -> int:
        self.received.append(event.dataset)
        return 0x0000

    def stop(self) -> None:
        self.server.shutdown()


def node_settings(outbox: Path, pacs_port: int, **overrides) -> NodeSettings:
    values = dict(ae_title="REDSEG", port=0, allowed_callers=[CALLER], destination_ae="PACS", destination_port=pacs_port,
                  outbox=outbox, metrics_port=0, retry_interval_s=0.5, send_timeout_s=5)
    return NodeSettings(**(values | overrides))


@contextmanager
def running_node(checkpoint: Path, outbox: Path, pacs_port: int, **model_settings) -> Iterator[DicomNode]:
    node = DicomNode(make_settings(checkpoint, **model_settings), node_settings(outbox, pacs_port))
    try:
        node.start(ready_timeout_s=120)
        yield node
    finally:
        node.stop()


def c_store(port: int, dataset: Dataset, calling: str = CALLER, called: str = "REDSEG") -> Dataset | None:
    """The C-STORE's status dataset, or None when the association was refused."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return None
    try:
        return assoc.send_c_store(dataset)
    finally:
        assoc.release()


def metric(node: DicomNode, line: str) -> bool:
    return line in generate_latest(node.metrics.registry).decode()


@pytest.fixture(scope="module")
def pacs() -> Iterator[Pacs]:
    pacs = Pacs(free_port())
    pacs.start()
    yield pacs
    pacs.stop()


@pytest.fixture(scope="module")
def node(scored_checkpoint: Path, pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DicomNode]:
    with running_node(scored_checkpoint, tmp_path_factory.mktemp("node") / "outbox", pacs.port) as node:
        yield node


def test_a_photograph_comes_back_as_seg_and_sr(node: DicomNode, pacs: Pacs, tmp_path):
    pacs.received.clear()
    photo = photograph(sample_rgb(*GRADABLE), "jpeg")
    assert c_store(node.port, photo).Status == 0x0000
    wait_until(lambda: len(pacs.received) == 2, 30, "the SEG and SR at the destination")
    seg, sr = sorted(pacs.received, key=lambda ds: ds.Modality != "SEG")
    assert seg.Modality == "SEG" and sr.Modality == "SR"
    assert photo.StudyInstanceUID == seg.StudyInstanceUID == sr.StudyInstanceUID and sr.PatientID == photo.PatientID
    values = report_values(sr)
    assert values["MA"]["segmentation"] == seg.SOPInstanceUID and values["photograph"]["source"] == [photo.SOPInstanceUID]
    assert values["photograph"]["CAD Operating Point"] == SCORE.operating_point
    assert dciodvfy_errors(as_file(sr), tmp_path, iod="ComprehensiveSR") == []
    wait_until(lambda: node.outbox.count() == 0, 10, "the outbox emptied")
    assert node.metrics.stored._value.get() >= 2 and metric(node, "redseg_dicom_photographs_received_total")
    assert metric(node, 'redseg_dicom_associations_total{outcome="accepted"}')


@pytest.mark.slow  # a node of its own
def test_a_four_lesion_model_sends_a_segment_per_lesion(pacs: Pacs, tmp_path):
    """The SEG follows the model's lesions (MA, HE, EX, SE, in its order); the SR reports each on its segment."""
    pacs.received.clear()
    checkpoint = tiny_checkpoint(tmp_path / "four.safetensors", exudates=True)
    with running_node(checkpoint, tmp_path / "outbox", pacs.port) as node:
        assert c_store(node.port, photograph(sample_rgb(*GRADABLE), "jpeg")).Status == 0x0000
        wait_until(lambda: len(pacs.received) == 2, 30, "the SEG and SR at the destination")
    seg, sr = sorted(pacs.received, key=lambda ds: ds.Modality != "SEG")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Microaneurysms", "Haemorrhages", "Hard exudates", "Soft exudates"]
    assert seg.NumberOfFrames == 4 and dciodvfy_errors(as_file(seg), tmp_path) == []
    assert dciodvfy_errors(as_file(sr), tmp_path, iod="ComprehensiveSR") == []
    values = report_values(sr)
    assert all(values[lesion]["segmentation"] == seg.SOPInstanceUID for lesion in ("MA", "HE", "EX", "SE"))


def as_file(dataset: Dataset) -> bytes:
    """A received dataset as a DICOM file (pynetdicom gives it its file meta)."""
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_unknown_callers_and_wrong_called_titles_are_refused(node: DicomNode):
    photo = photograph(sample_rgb(), "jpeg")
    before = node.metrics.received._value.get()
    assert c_store(node.port, photo, calling="INTRUDER") is None
    assert c_store(node.port, photo, called="SOMEONE") is None
    assert node.metrics.received._value.get() == before  # refused before any data came
    assert node.metrics.associations.labels(outcome="refused")._value.get() >= 2


def test_a_photograph_too_small_for_the_model_fails_with_a_reason(node: DicomNode):
    answer = c_store(node.port, photograph(sample_rgb(12, 8), "explicit"))
    assert answer.Status == CANNOT_UNDERSTAND and answer.ErrorComment.startswith("the photograph")
    assert node.metrics.failed.labels(reason="too_small")._value.get() >= 1


def test_no_patient_data_reaches_the_nodes_log_or_metrics(node: DicomNode, caplog):
    """The API's test (tests/service/test_dicom.py) extended to the node."""
    caplog.set_level(logging.DEBUG)
    photo = photograph(sample_rgb(), "jpeg")
    broken = photograph(sample_rgb(), "jpeg")
    broken.PixelData = broken.PixelData[: len(broken.PixelData) // 3]
    statuses = [c_store(node.port, ds).Status for ds in (photo, broken)] + [c_store(node.port, photo, calling="X") is None]
    assert statuses[0] == 0x0000 and statuses[1] != 0x0000 and statuses[2]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "photograph from ORTHANC" in logged  # the log was captured, so its check below means something
    metrics = generate_latest(node.metrics.registry).decode()
    for value in (PATIENT["PatientName"], PATIENT["PatientName"].split("^")[0], PATIENT["PatientID"], PATIENT["PatientBirthDate"],
                  photo.StudyInstanceUID, photo.SOPInstanceUID):
        assert value not in logged and value not in metrics


@pytest.mark.slow  # a node of its own
def test_a_full_queue_answers_out_of_resources_at_once(scored_checkpoint: Path, pacs: Pacs, tmp_path):
    """queue_size 0 and one worker: one photograph in progress at a time. While one holds the place, the next
    gets 0xA700 (Refused: Out of Resources, which senders retry later) at once, not a hang."""
    with running_node(scored_checkpoint, tmp_path / "outbox", pacs.port, queue_size=0) as node:
        release = threading.Event()

        async def hold_the_place():
            with node.pool.admit(1000):
                await asyncio.to_thread(release.wait, 60)

        held = asyncio.run_coroutine_threadsafe(hold_the_place(), node.loop)
        wait_until(lambda: node.pool.admission.in_flight == 1, 10, "the place held")
        started = time.monotonic()
        answer = c_store(node.port, photograph(sample_rgb(), "jpeg"))
        assert answer.Status == OUT_OF_RESOURCES and time.monotonic() - started < 10
        assert "busy" in answer.ErrorComment
        release.set()
        held.result(10)
        assert c_store(node.port, photograph(sample_rgb(), "jpeg")).Status == 0x0000
        assert node.metrics.failed.labels(reason="busy")._value.get() == 1


@pytest.mark.slow  # a node of its own, sends retried
def test_results_wait_while_the_destination_is_away_and_go_when_it_is_back(scored_checkpoint: Path, tmp_path):
    away = Pacs(free_port())
    outbox = tmp_path / "outbox"
    with running_node(scored_checkpoint, outbox, away.port) as node:
        photo = photograph(sample_rgb(), "jpeg")
        assert c_store(node.port, photo).Status == 0x0000  # answered once the results are on disk
        assert stat.S_IMODE(outbox.stat().st_mode) == 0o700
        wait_until(lambda: node.metrics.send_failures._value.get() >= 1, 20, "a failed try")
        assert node.outbox.count() == 2 and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in outbox.glob("*.dcm"))
        away.start()
        try:
            wait_until(lambda: len(away.received) == 2, 30, "the kept results sent")
        finally:
            away.stop()
        assert {ds.Modality for ds in away.received} == {"SEG", "SR"}
        assert all(ds.StudyInstanceUID == photo.StudyInstanceUID for ds in away.received)
        wait_until(lambda: node.outbox.count() == 0, 10, "the outbox emptied")


def test_results_left_from_a_stopped_node_are_sent_by_the_next_and_old_ones_expire(tmp_path):
    outbox = Outbox(tmp_path / "outbox", keep_s=3600)
    outbox.put([b"seg", b"sr"])
    old = outbox.put([b"old"])
    os.utime(tmp_path / "outbox" / f"{old}-0.dcm", (time.time() - 7200, time.time() - 7200))
    assert Outbox(tmp_path / "outbox", keep_s=3600).expire() == 1
    (files,) = Outbox(tmp_path / "outbox", keep_s=3600).waiting().values()
    assert [path.read_bytes() for path in files] == [b"seg", b"sr"]


@pytest.mark.parametrize("overrides, message", [
    ({"allowed_callers": []}, "ALLOWED_CALLERS is empty"),
    ({"destination_ae": None, "destination_port": None}, "name one destination"),
    ({"stow_url": "http://127.0.0.1:1/dicom-web"}, "name one destination"),
    ({"destination_port": None}, "both REDSEG_DICOM_DESTINATION_AE"),
    ({"allowed_callers": "A,B\\C"}, "allowed_callers"),
])
def test_settings_say_what_is_missing(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        node_settings(tmp_path, 104, **overrides)
    assert node_settings(tmp_path, 104, allowed_callers="ORTHANC, CAMERA 2").allowed_callers == ["ORTHANC", "CAMERA 2"]


@pytest.mark.slow  # a node of its own
def test_tls_only_when_a_certificate_is_set(scored_checkpoint: Path, pacs: Pacs, tmp_path):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (it makes the test's certificate)")
    cert, key = tmp_path / "redseg.pem", tmp_path / "redseg.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    settings = node_settings(tmp_path / "outbox", pacs.port, tls_cert=cert, tls_key=key)
    node = DicomNode(make_settings(scored_checkpoint), settings)
    try:
        node.start(ready_timeout_s=120)
        photo = photograph(sample_rgb(*GRADABLE), "jpeg")
        assert c_store(node.port, photo) is None  # no TLS: no association
        ae = AE(ae_title=CALLER)
        ae.add_requested_context(photo.SOPClassUID, photo.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", node.port, ae_title="REDSEG",
                             tls_args=(ssl.create_default_context(cafile=str(cert)), "localhost"))
        assert assoc.is_established
        try:
            assert assoc.send_c_store(photo).Status == 0x0000
        finally:
            assoc.release()
    finally:
        node.stop()


def test_docs_name_every_setting():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "dicom.md").read_text()
    missing = [f"REDSEG_DICOM_{name.upper()}" for name in NodeSettings.model_fields if f"REDSEG_DICOM_{name.upper()}" not in docs]
    assert not missing, f"docs/dicom.md does not name {missing}"


@pytest.mark.slow  # starts redseg-dicom-node
def test_the_command_serves_metrics_stops_on_sigterm_and_logs_no_patient_data(scored_checkpoint: Path, pacs: Pacs, tmp_path):
    import signal
    import subprocess
    import sys

    import httpx

    port, metrics_port = free_port(), free_port()
    env = os.environ | {
        "REDSEG_CHECKPOINT": str(scored_checkpoint), "REDSEG_DEVICE": "cpu", "REDSEG_DICOM_PORT": str(port),
        "REDSEG_DICOM_ALLOWED_CALLERS": CALLER, "REDSEG_DICOM_DESTINATION_AE": "PACS",
        "REDSEG_DICOM_DESTINATION_PORT": str(pacs.port), "REDSEG_DICOM_OUTBOX": str(tmp_path / "outbox"),
        "REDSEG_DICOM_METRICS_PORT": str(metrics_port),
    }
    root = Path(__file__).resolve().parents[2]
    with open(tmp_path / "node.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service.dicom_node.main"], cwd=root, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_until(lambda: httpx.get(metrics_url, timeout=2).status_code == 200, 120, "the node's /metrics",
                   alive=lambda: process.poll() is None, log=tmp_path / "node.log")
        photo = photograph(sample_rgb(*GRADABLE), "jpeg")
        assert c_store(port, photo).Status == 0x0000 and c_store(port, photo, calling="STRANGER") is None
        metrics = httpx.get(metrics_url, timeout=5).text
        assert "redseg_dicom_photographs_received_total 1.0" in metrics
        assert 'redseg_dicom_associations_total{outcome="refused"} 1.0' in metrics and "redseg_queue_depth" in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
    output = (tmp_path / "node.log").read_text()
    assert code == 0 and "photograph from ORTHANC" in output and "refused an association from 'STRANGER'" in output
    for value in (PATIENT["PatientName"], PATIENT["PatientID"], PATIENT["PatientBirthDate"], photo.StudyInstanceUID):
        assert value not in output and value not in metrics


def test_the_command_names_a_missing_setting(monkeypatch, capsys):
    from service.dicom_node.main import main

    monkeypatch.delenv("REDSEG_DICOM_ALLOWED_CALLERS", raising=False)
    assert main([]) == 2
    assert "REDSEG_DICOM_ALLOWED_CALLERS is empty" in capsys.readouterr().err


def test_a_refused_result_waits_without_holding_up_the_others(tmp_path):
    from service.dicom_node.destinations import DestinationError, Forwarder
    from service.dicom_node.metrics import NodeMetrics

    class Destination:
        def __init__(self, unreachable: bool):
            self.unreachable, self.taken = unreachable, []

        def send(self, files: list[bytes]) -> None:
            if self.unreachable or files[0] == b"refused":
                raise DestinationError("no", unreachable=self.unreachable)
            self.taken.append(files)

    outbox = Outbox(tmp_path / "outbox", keep_s=3600)
    outbox.put([b"refused", b"sr"])
    outbox.put([b"seg", b"sr"])
    away = Destination(unreachable=True)
    assert not Forwarder(outbox, away, NodeMetrics(), 1).flush() and outbox.count() == 4
    picky = Destination(unreachable=False)
    assert not Forwarder(outbox, picky, NodeMetrics(), 1).flush()
    assert picky.taken == [[b"seg", b"sr"]] and outbox.count() == 2  # the refused one is kept, to try again


def test_it_answers_c_echo(node: DicomNode):
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title=CALLER)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="REDSEG")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
