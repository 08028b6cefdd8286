"""DICOM Segmentation out (highdicom): one coded segment per lesion the model segments, of the source photograph."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from model.config import RED_LESIONS
from model.screening.masks import binary_mask

SEG_TYPES = ("binary", "fractional")
"""binary: the thresholded masks; fractional: the probabilities (0..1 in 255 steps)."""

SCHEME = "99REDSEG"
"""RedSeg's private coding scheme designator: for the concepts no verified standard code fits (docs/dicom.md)."""

# SNOMED CT concepts. MA and HE as NLM MedGen lists them: Retinal microaneurysm (34037000, C0154834) and
# Retinal hemorrhage (28998008, C0035317). EX: Retinal exudates (39832008), as HL7's Specialty Eyecare CDA
# guide lists it (value set PosteriorSegmentObservationCodes, build.fhir.org/ig/HL7/cda-eyecare). SE: no
# SNOMED CT concept for cotton wool spots could be verified from a citable source, so a private code.
LESION_CODES = {
    "MA": hd.sr.CodedConcept("34037000", "SCT", "Retinal microaneurysm"),
    "HE": hd.sr.CodedConcept("28998008", "SCT", "Retinal hemorrhage"),
    "EX": hd.sr.CodedConcept("39832008", "SCT", "Retinal exudates"),
    "SE": hd.sr.CodedConcept("RS-SOFT-EXUDATE", SCHEME, "Soft exudate (cotton wool spot)"),
}
LESION_LABELS = {"MA": "Microaneurysms", "HE": "Haemorrhages", "EX": "Hard exudates", "SE": "Soft exudates"}
SERIES_NUMBER = 9100
"""Series number of RedSeg's SEG series (new UIDs each time; the number only orders series in viewers)."""


def algorithm(name: str, version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name="RedSeg", version=version, family=codes.cid7162.ArtificialIntelligence, source=name
    )


def segment_descriptions(lesions: tuple[str, ...], name: str, version: str) -> list[hd.seg.SegmentDescription]:
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=LESION_LABELS[lesion],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=LESION_CODES[lesion],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(name, version),
        )
        for number, lesion in enumerate(lesions, start=1)
    ]


def segment_planes(probabilities: np.ndarray, thresholds: dict[str, float], seg_type: str) -> tuple[np.ndarray, str]:
    """(H, W, C) planes of the SEG's frames, one per lesion of ``thresholds``, and the segmentation type."""
    if len(probabilities) != len(thresholds):
        raise ValueError(f"{len(probabilities)} probability maps for {len(thresholds)} lesions {tuple(thresholds)}")
    if seg_type == "binary":
        # The same masks as the PNG answers': thresholded on the 16-bit levels (model.screening.masks).
        masks = [binary_mask(probabilities[c], threshold) > 0 for c, threshold in enumerate(thresholds.values())]
        return np.stack(masks, axis=-1), hd.seg.SegmentationTypeValues.BINARY
    if seg_type == "fractional":
        return np.clip(np.moveaxis(probabilities, 0, -1), 0.0, 1.0), hd.seg.SegmentationTypeValues.FRACTIONAL
    raise ValueError(f"seg_type must be one of {SEG_TYPES}, got {seg_type!r}")


def segmentation(
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    model_name: str,
    model_version: str,
) -> hd.seg.Segmentation:
    """A SEG of ``source`` from ``probabilities`` (C, H, W): one segment per lesion of ``thresholds`` (the model's
    lesions, in its output channel order), segment n on frame n."""
    lesions = tuple(thresholds)
    planes, kind = segment_planes(probabilities, thresholds, seg_type)
    seg = hd.seg.Segmentation(
        source_images=[highdicom_source(source)],
        pixel_array=planes[None],
        segmentation_type=kind,
        segment_descriptions=segment_descriptions(lesions, model_name, model_version),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="RedSeg",
        manufacturer_model_name=model_name,
        software_versions=f"RedSeg model {model_name} {model_version}",
        device_serial_number="0",
        series_description=f"RedSeg {'red lesions' if set(lesions) <= set(RED_LESIONS) else 'lesions'} ({seg_type})",
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        omit_empty_frames=False,  # one frame per segment, in the lesions' order, even when a lesion is absent
    )
    # Type 2C without a patient coordinate system; highdicom leaves it out. The masks share the
    # photograph's pixel grid, so they share its orientation.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    if any(LESION_CODES[lesion].scheme_designator == SCHEME for lesion in lesions):
        seg.CodingSchemeIdentificationSequence = [coding_scheme()]
    return seg


def coding_scheme() -> Dataset:
    """The declaration of RedSeg's private coding scheme (PS3.3 C.12.1.1.2.1)."""
    item = Dataset()
    item.CodingSchemeDesignator = SCHEME
    item.CodingSchemeName = "RedSeg screening concepts"
    item.CodingSchemeResponsibleOrganization = "RedSeg"
    return item


def segment_numbers(seg: Dataset) -> dict[str, int]:
    """Per lesion, its segment number in a RedSeg SEG (frame n is segment n), read from the segments' codes."""
    by_code = {(code.value, code.scheme_designator): lesion for lesion, code in LESION_CODES.items()}
    numbers = {}
    for segment in seg.SegmentSequence:
        code = segment.SegmentedPropertyTypeCodeSequence[0]
        lesion = by_code.get((code.CodeValue, code.CodingSchemeDesignator))
        if lesion is not None:
            numbers[lesion] = int(segment.SegmentNumber)
    return numbers


class _SharedGroups(Dataset):
    PixelMeasuresSequence = None
    """What highdicom reads as the source's pixel measures: none, for a photograph without a pixel spacing."""


def highdicom_source(source: Dataset) -> Dataset:
    """A stand-in for ``source`` that highdicom reads as a single-frame photograph.

    highdicom takes every image of a multi-frame-capable IOD (Ophthalmic Photography is one) for an
    enhanced multi-frame image, with NumberOfFrames and shared functional groups; a camera's OP file
    has neither. The stand-in is a shallow copy (same UIDs, patient and study) with one frame and
    shared functional groups holding only the pixel measures (none without a pixel spacing).
    """
    if "NumberOfFrames" in source and "SharedFunctionalGroupsSequence" in source:
        return source
    stand_in = copy.copy(source)
    stand_in.NumberOfFrames = 1
    shared = _SharedGroups()
    if "PixelSpacing" in source:
        shared.PixelMeasuresSequence = hd.PixelMeasuresSequence(pixel_spacing=source.PixelSpacing, slice_thickness=None)
    stand_in.SharedFunctionalGroupsSequence = [shared]
    return stand_in
