"""The screening summary as a DICOM SR: it validates (dciodvfy), reads back with highdicom and says what the summary says."""

from __future__ import annotations

import csv
from io import BytesIO

import numpy as np
import pydicom
import pytest

from model.config import LESIONS
from model.formats.dicom import read_dicom, to_bytes
from model.formats.dicom_seg import segmentation
from model.formats.dicom_sr import SCHEME, report_values, structured_report
from model.screening.features import FieldOfView, LesionCount
from model.screening.quality import ImageQuality
from model.screening.referral import DISCLAIMER
from model.screening.summary import MacularOedemaRisk, Referral, ScreeningSummary, ungradable_note
from tests.dicom_files import dciodvfy_errors, photograph, sample_rgb

THRESHOLDS = {"MA": 0.5, "HE": 0.45}
LESIONS_FOUND = {"MA": LesionCount(3, 21, 0.0031), "HE": LesionCount(1, 140, 0.0207)}
FOV = FieldOfView(area_pixels=6757, fraction_of_image=0.70385, gradable_fraction=0.98727)


def quality(*reasons: str) -> ImageQuality:
    return ImageQuality(not reasons, reasons, 0.7, 162.0, 0.02, 0.12, 0.98)


@pytest.fixture(scope="module")
def source() -> pydicom.Dataset:
    return read_dicom(to_bytes(photograph(sample_rgb(), "jpeg"))).dataset


@pytest.fixture(scope="module")
def seg(source):
    probabilities = np.random.default_rng(0).random((len(LESIONS), source.Rows, source.Columns), dtype=np.float32)
    return segmentation(source, probabilities, THRESHOLDS, "binary", "redseg-test", "7")


def written(source, seg, summary: ScreeningSummary, tmp_path) -> tuple[pydicom.Dataset, dict]:
    data = to_bytes(structured_report(source, seg, summary, THRESHOLDS, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path, iod="ComprehensiveSR") == []
    dataset = pydicom.dcmread(BytesIO(data))
    return dataset, report_values(dataset)


def test_a_referred_photograph(source, seg, tmp_path):
    summary = ScreeningSummary(LESIONS_FOUND, FOV, quality(), Referral(0.8123456, 0.74, True, {}))
    sr, values = written(source, seg, summary, tmp_path)
    assert sr.Modality == "SR" and sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    assert sr.SeriesInstanceUID not in (source.SeriesInstanceUID, seg.SeriesInstanceUID)
    evidence = {item.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in series.ReferencedSOPSequence}
    assert evidence == {source.SOPInstanceUID, seg.SOPInstanceUID}
    for lesion in LESIONS:
        found = LESIONS_FOUND[lesion]
        assert values[lesion] == {"Number of lesions": found.count, "Area": found.area_pixels, "segmentation": seg.SOPInstanceUID,
                                  "Area as a share of the field of view": pytest.approx(found.area_fraction_fov)}
    photo = values["photograph"]
    assert photo["source"] == [source.SOPInstanceUID]
    assert photo["Referral score"] == pytest.approx(0.8123456) and photo["CAD Operating Point"] == 0.74
    assert photo["Referral call"] == ["Refer: score at or above the operating point"]
    assert photo["Image Quality"] == ["Gradable"] and "Reason the photograph is ungradable" not in photo
    assert photo["Area of the field of view"] == 6757 and photo["Gradable share of the field of view"] == pytest.approx(0.98727)
    assert values["comments"] == [DISCLAIMER]
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == SCHEME


def test_the_frames_it_refers_to_are_the_lesions_segments(source, seg, tmp_path):
    summary = ScreeningSummary(LESIONS_FOUND, FOV, quality(), Referral(0.2, 0.74, False, {}))
    sr, values = written(source, seg, summary, tmp_path)
    assert values["photograph"]["Referral call"] == ["Below the referral operating point"]
    groups = sr.ContentSequence[-2].ContentSequence  # Imaging Measurements: MA, HE, then the photograph
    for number, (group, lesion) in enumerate(zip(groups, LESIONS), start=1):
        (image,) = [item for item in group.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121214"]
        reference = image.ReferencedSOPSequence[0]
        assert reference.ReferencedFrameNumber == number  # frame n of the SEG is segment n
        assert seg.PerFrameFunctionalGroupsSequence[number - 1].SegmentIdentificationSequence[0].ReferencedSegmentNumber == number
        assert seg.SegmentSequence[number - 1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == {
            "MA": "Retinal microaneurysm", "HE": "Retinal hemorrhage"}[lesion]


def test_an_ungradable_photograph_has_no_score_and_says_why(source, seg, tmp_path):
    bad = quality("too dark", "out of focus")
    summary = ScreeningSummary(LESIONS_FOUND, FOV, bad, None, ungradable_note(bad))
    _, values = written(source, seg, summary, tmp_path)
    photo = values["photograph"]
    assert photo["Referral call"] == ["Ungradable: no referral decision"]
    assert photo["Image Quality"] == ["Ungradable: retake the photograph"]
    assert photo["Reason the photograph is ungradable"] == ["Too dark", "Out of focus"]
    assert "Referral score" not in photo and "CAD Operating Point" not in photo
    assert values["comments"] == [ungradable_note(bad), DISCLAIMER]


def test_without_a_fitted_score(source, seg, tmp_path):
    summary = ScreeningSummary(LESIONS_FOUND, FOV, quality(), None, "no score here")
    _, values = written(source, seg, summary, tmp_path)
    assert values["photograph"]["Referral call"] == ["No referral score"]


def test_redseg_segment_writes_the_sr_beside_the_seg(tmp_path):
    from model.cli import main
    from tests.service.helpers import tiny_checkpoint

    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    dicom = tmp_path / "c.dcm"
    dicom.write_bytes(to_bytes(photograph(sample_rgb(), "jpeg")))
    out = tmp_path / "out"
    assert main([str(dicom), "--out", str(out), "--checkpoint", str(checkpoint), "--dicom-sr", "--no-progress"]) == 0
    seg = pydicom.dcmread(out / "c_seg.dcm")
    sr_bytes = (out / "c_sr.dcm").read_bytes()
    assert dciodvfy_errors(sr_bytes, tmp_path, iod="ComprehensiveSR") == []
    values = report_values(pydicom.dcmread(BytesIO(sr_bytes)))
    (row,) = csv.DictReader((out / "screening.csv").open())
    for lesion in LESIONS:
        assert values[lesion]["segmentation"] == seg.SOPInstanceUID and seg.SegmentationType == "BINARY"
        assert values[lesion]["Number of lesions"] == int(row[f"{lesion}_count"])
        assert values[lesion]["Area"] == int(row[f"{lesion}_area_pixels"])
    call = "No referral score" if row["gradable"] == "1" else "Ungradable: no referral decision"
    assert values["photograph"]["Referral call"] == [call]
    assert values["photograph"]["Gradable share of the field of view"] == pytest.approx(float(row["gradable_fraction"]), abs=1e-4)


FOUR = {"MA": 0.5, "HE": 0.45, "EX": 0.4, "SE": 0.6}
EXUDATES_FOUND = LESIONS_FOUND | {"EX": LesionCount(5, 310, 0.0459), "SE": LesionCount(0, 0, 0.0)}


@pytest.fixture(scope="module")
def four_seg(source):
    probabilities = np.random.default_rng(1).random((4, source.Rows, source.Columns), dtype=np.float32)
    return segmentation(source, probabilities, FOUR, "binary", "redseg-test", "7")


def test_the_exudates_are_reported_when_the_summary_carries_them(source, four_seg, tmp_path):
    summary = ScreeningSummary(EXUDATES_FOUND, FOV, quality(), Referral(0.8, 0.74, True, {}))
    data = to_bytes(structured_report(source, four_seg, summary, FOUR, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path, iod="ComprehensiveSR") == []
    sr = pydicom.dcmread(BytesIO(data))
    values = report_values(sr)
    for lesion, found in EXUDATES_FOUND.items():
        assert values[lesion] == {"Number of lesions": found.count, "Area": found.area_pixels, "segmentation": four_seg.SOPInstanceUID,
                                  "Area as a share of the field of view": pytest.approx(found.area_fraction_fov)}
    assert [frame_and_finding(group) for group in sr.ContentSequence[-2].ContentSequence[:-1]] == [
        (1, "Retinal microaneurysm"), (2, "Retinal hemorrhage"), (3, "Retinal exudates"), (4, "Soft exudate (cotton wool spot)")]
    parameters = sr.ContentSequence[-2].ContentSequence[0]  # the algorithm's parameters name every threshold counted at
    assert "SE threshold 0.6" in str(parameters)
    assert "Macular oedema risk call" not in values["photograph"]  # a summary without the risk states none


@pytest.mark.parametrize("at_risk", [True, False])
def test_the_risk_of_macular_oedema_is_reported_beside_the_referral_call(source, four_seg, tmp_path, at_risk):
    risk = MacularOedemaRisk(0.6123 if at_risk else 0.2, 0.38, at_risk, {})
    summary = ScreeningSummary(EXUDATES_FOUND, FOV, quality(), Referral(0.8, 0.74, True, {}), macular_oedema=risk)
    data = to_bytes(structured_report(source, four_seg, summary, FOUR, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path, iod="ComprehensiveSR") == []
    photo = report_values(pydicom.dcmread(BytesIO(data)))["photograph"]
    assert photo["Macular oedema risk score"] == pytest.approx(risk.score) and photo["Macular oedema risk operating point"] == 0.38
    assert photo["Macular oedema risk call"] == [
        "At risk of macular oedema: at or above its operating point" if at_risk else "Below the macular oedema risk operating point"]
    assert photo["Referral call"] == ["Refer: score at or above the operating point"] and photo["CAD Operating Point"] == 0.74


def test_a_red_lesion_summary_on_a_four_lesion_seg_refers_to_the_red_segments(source, four_seg, tmp_path):
    summary = ScreeningSummary(LESIONS_FOUND, FOV, quality(), None, "no score here")
    data = to_bytes(structured_report(source, four_seg, summary, FOUR, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path, iod="ComprehensiveSR") == []
    sr = pydicom.dcmread(BytesIO(data))
    assert set(report_values(sr)) == {"MA", "HE", "photograph", "comments"}
    assert [frame_and_finding(group) for group in sr.ContentSequence[-2].ContentSequence[:-1]] == [
        (1, "Retinal microaneurysm"), (2, "Retinal hemorrhage")]


def test_a_lesion_the_seg_lacks_is_an_error(source, seg):
    with pytest.raises(ValueError, match="no segment for EX, SE"):
        structured_report(source, seg, ScreeningSummary(EXUDATES_FOUND, FOV, quality(), None, "n"), FOUR, "m", "1")


def frame_and_finding(group: pydicom.Dataset) -> tuple[int, str]:
    """A planar ROI group's SEG frame number and finding."""
    (image,) = [item for item in group.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121214"]
    (finding,) = [item for item in group.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121071"]
    return image.ReferencedSOPSequence[0].ReferencedFrameNumber, finding.ConceptCodeSequence[0].CodeMeaning
