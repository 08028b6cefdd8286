"""DICOM Segmentation out (highdicom): MA and HE as two coded segments of the source photograph."""

from __future__ import annotations

import copy

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from model.config import LESIONS
from model.screening.masks import binary_mask

SEG_TYPES = ("binary", "fractional")
"""binary: the thresholded masks; fractional: the probabilities (0..1 in 255 steps)."""

# SNOMED CT concepts, as NLM MedGen lists them: Retinal microaneurysm (34037000, C0154834)
# and Retinal hemorrhage (28998008, C0035317).
LESION_CODES = {
    "MA": hd.sr.CodedConcept("34037000", "SCT", "Retinal microaneurysm"),
    "HE": hd.sr.CodedConcept("28998008", "SCT", "Retinal hemorrhage"),
}
LESION_LABELS = {"MA": "Microaneurysms", "HE": "Haemorrhages"}
SERIES_NUMBER = 9100
"""Series number of RedSeg's SEG series (new UIDs each time; the number only orders series in viewers)."""


def algorithm(name: str, version: str) -> hd.AlgorithmIdentificationSequence:
    return hd.AlgorithmIdentificationSequence(
        name="RedSeg", version=version, family=codes.cid7162.ArtificialIntelligence, source=name
    )


def segment_descriptions(name: str, version: str) -> list[hd.seg.SegmentDescription]:
    return [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=LESION_LABELS[lesion],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=LESION_CODES[lesion],
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm(name, version),
        )
        for number, lesion in enumerate(LESIONS, start=1)
    ]


def segmentation(
    source: Dataset,
    probabilities: np.ndarray,
    thresholds: dict[str, float],
    seg_type: str,
    model_name: str,
    model_version: str,
) -> hd.seg.Segmentation:
    """A SEG of ``source`` from ``probabilities`` (2, H, W), channels in ``LESIONS`` order."""
    if seg_type == "binary":
        # The same masks as the PNG answers': thresholded on the 16-bit levels (model.screening.masks).
        planes = np.stack([binary_mask(probabilities[c], thresholds[lesion]) > 0 for c, lesion in enumerate(LESIONS)], axis=-1)
        kind = hd.seg.SegmentationTypeValues.BINARY
    elif seg_type == "fractional":
        planes = np.clip(np.moveaxis(probabilities, 0, -1), 0.0, 1.0)
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        raise ValueError(f"seg_type must be one of {SEG_TYPES}, got {seg_type!r}")
    seg = hd.seg.Segmentation(
        source_images=[highdicom_source(source)],
        pixel_array=planes[None],
        segmentation_type=kind,
        segment_descriptions=segment_descriptions(model_name, model_version),
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="RedSeg",
        manufacturer_model_name=model_name,
        software_versions=f"RedSeg model {model_name} {model_version}",
        device_serial_number="0",
        series_description=f"RedSeg red lesions ({seg_type})",
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        omit_empty_frames=False,  # one frame per segment, MA then HE, even when a lesion is absent
    )
    # Type 2C without a patient coordinate system; highdicom leaves it out. The masks share the
    # photograph's pixel grid, so they share its orientation.
    seg.PatientOrientation = source.get("PatientOrientation", "")
    return seg


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
