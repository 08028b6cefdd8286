"""DICOM SEG out: valid for dicom3tools, readable by highdicom, coded, referencing its photograph."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
import pytest

from model.formats.dicom import read_dicom, to_bytes
from model.formats.dicom_seg import LESION_CODES, segment_numbers, segmentation
from tests.dicom_files import PATIENT, dciodvfy_errors, photograph, sample_rgb, to_bytes as file_bytes

THRESHOLDS = {"MA": 0.5, "HE": 0.3}


@pytest.fixture(scope="module")
def source():
    return read_dicom(file_bytes(photograph(sample_rgb(), "jpeg"))).dataset


@pytest.fixture(scope="module")
def probabilities() -> np.ndarray:
    p = np.zeros((2, 80, 120), np.float32)
    p[0, 10:14, 20:24] = 0.9
    p[0, 40, 60] = 0.55
    p[1, 30:50, 70:100] = np.linspace(0.0, 1.0, 30, dtype=np.float32)
    return p


@pytest.mark.parametrize("seg_type", ["binary", "fractional"])
def test_seg_is_valid_and_refers_to_its_photograph(source, probabilities, seg_type, tmp_path):
    data = to_bytes(segmentation(source, probabilities, THRESHOLDS, seg_type, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path) == []
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(BytesIO(data)))
    assert seg.SegmentationType == seg_type.upper()
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SOPInstanceUID != source.SOPInstanceUID
    for keyword, value in PATIENT.items():
        assert str(seg[keyword].value) == value
    assert seg.AccessionNumber == source.AccessionNumber and seg.StudyDate == source.StudyDate
    (series,) = seg.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert series.ReferencedInstanceSequence[0].ReferencedSOPClassUID == source.SOPClassUID
    for number, lesion in enumerate(("MA", "HE"), start=1):
        description = seg.get_segment_description(number)
        assert description.segmented_property_type == LESION_CODES[lesion]
        assert description.segmented_property_type.scheme_designator == "SCT"
        algorithm = description.algorithm_identification[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion, algorithm.AlgorithmSource) == ("RedSeg", "7", "redseg-test")
    assert LESION_CODES["MA"].value == "34037000" and LESION_CODES["HE"].value == "28998008"
    assert seg.ManufacturerModelName == "redseg-test"


def test_binary_frames_are_the_masks_and_fractional_frames_the_probabilities(source, probabilities):
    binary = segmentation(source, probabilities, THRESHOLDS, "binary", "m", "1")
    frames = pixels_of(binary, source)
    for channel, lesion in enumerate(("MA", "HE")):
        assert np.array_equal(frames[..., channel] > 0, probabilities[channel] >= THRESHOLDS[lesion])
    fractional = segmentation(source, probabilities, THRESHOLDS, "fractional", "m", "1")
    values = pixels_of(fractional, source)
    np.testing.assert_allclose(np.moveaxis(values, -1, 0), probabilities, atol=0.5 / 255 + 1e-6)


def pixels_of(seg: hd.seg.Segmentation, source) -> np.ndarray:
    """(rows, columns, segments): the SEG read back from its bytes, fractional values rescaled to 0..1."""
    read = hd.seg.Segmentation.from_dataset(pydicom.dcmread(BytesIO(to_bytes(seg))))
    return read.get_pixels_by_source_instance([source.SOPInstanceUID], combine_segments=False, rescale_fractional=True)[0]


def test_an_absent_lesion_keeps_its_empty_frame(source, probabilities):
    only_ma = probabilities.copy()
    only_ma[1] = 0.0
    seg = pydicom.dcmread(BytesIO(to_bytes(segmentation(source, only_ma, THRESHOLDS, "binary", "m", "1"))))
    assert seg.NumberOfFrames == 2 and seg.pixel_array[0].any() and not seg.pixel_array[1].any()


def test_a_two_lesion_seg_is_as_before(source, probabilities):
    seg = segmentation(source, probabilities, THRESHOLDS, "binary", "m", "1")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Microaneurysms", "Haemorrhages"]
    assert seg.NumberOfFrames == 2 and seg.SeriesDescription == "RedSeg red lesions (binary)"
    assert "CodingSchemeIdentificationSequence" not in seg  # SNOMED CT only, as before
    assert segment_numbers(seg) == {"MA": 1, "HE": 2}


FOUR = {"MA": 0.5, "HE": 0.3, "EX": 0.4, "SE": 0.6}
"""A four-lesion model's thresholds, in its output channel order."""


@pytest.fixture(scope="module")
def four_probabilities(probabilities) -> np.ndarray:
    exudates = np.zeros((2, *probabilities.shape[1:]), np.float32)
    exudates[0, 60:70, 10:30] = 0.8
    exudates[1, 5:15, 90:110] = np.linspace(0.0, 1.0, 20, dtype=np.float32)
    return np.concatenate([probabilities, exudates])


@pytest.mark.parametrize("seg_type", ["binary", "fractional"])
def test_a_four_lesion_seg_has_a_coded_segment_per_lesion_in_model_order(source, four_probabilities, seg_type, tmp_path):
    data = to_bytes(segmentation(source, four_probabilities, FOUR, seg_type, "redseg-test", "7"))
    assert dciodvfy_errors(data, tmp_path) == []
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(BytesIO(data)))
    assert seg.NumberOfFrames == 4 and seg.SeriesDescription == f"RedSeg lesions ({seg_type})"
    codes = [(d.segmented_property_type.value, d.segmented_property_type.scheme_designator, d.segment_label)
             for d in (seg.get_segment_description(number) for number in range(1, 5))]
    assert codes == [("34037000", "SCT", "Microaneurysms"), ("28998008", "SCT", "Haemorrhages"),
                     ("39832008", "SCT", "Hard exudates"), ("RS-SOFT-EXUDATE", "99REDSEG", "Soft exudates")]
    assert seg.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99REDSEG"
    assert segment_numbers(seg) == {"MA": 1, "HE": 2, "EX": 3, "SE": 4}
    frames = pixels_of(seg, source)
    for channel, lesion in enumerate(FOUR):
        if seg_type == "binary":
            assert np.array_equal(frames[..., channel] > 0, four_probabilities[channel] >= FOUR[lesion])
        else:
            np.testing.assert_allclose(frames[..., channel], four_probabilities[channel], atol=0.5 / 255 + 1e-6)


def test_maps_and_thresholds_must_agree(source, probabilities):
    with pytest.raises(ValueError, match="2 probability maps for 4 lesions"):
        segmentation(source, probabilities, FOUR, "binary", "m", "1")
