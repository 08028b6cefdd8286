"""DICOM Structured Report out (highdicom): the screening summary as a TID 1500 measurement report.

The report joins the photograph's study and references the photograph (its image library) and the
DICOM SEG (``model.formats.dicom_seg``): per lesion the summary carries, a planar ROI group (TID 1410)
on the lesion's segment with its count and area in pixels and as a share of the field of view; for the
whole photograph, a group (TID 1501) with the field of view, the gradable share and the quality call,
the referral score with its operating point and the refer / below / ungradable call as coded qualitative
evaluations, and where the summary states it the risk of macular oedema likewise (score, operating point,
call). The disclaimer (and the note, when there is no referral decision) are TEXT comments in the
report's qualitative evaluations. Codes are standard (SNOMED CT, DCM, UCUM) where DICOM lists one; the
others are RedSeg's own under the private coding scheme ``99REDSEG`` (docs/dicom.md lists them).
"""

from __future__ import annotations

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from model.formats.dicom_seg import LESION_CODES, SCHEME, coding_scheme, highdicom_source, segment_numbers
from model.screening.summary import ScreeningSummary

SERIES_NUMBER = 9101
"""Series number of RedSeg's SR series (after the SEG's 9100)."""


def private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, SCHEME, meaning)


PROCEDURE = private("RS-SCREENING", "Red-lesion screening of a colour fundus photograph")
AREA_SHARE = private("RS-AREA-FOV", "Area as a share of the field of view")
FOV_AREA = private("RS-FOV-AREA", "Area of the field of view")
GRADABLE_SHARE = private("RS-GRADABLE-FOV", "Gradable share of the field of view")
SCORE = private("RS-SCORE", "Referral score")
REFERRAL = private("RS-REFERRAL", "Referral call")
REFER = private("RS-REFER", "Refer: score at or above the operating point")
BELOW = private("RS-BELOW", "Below the referral operating point")
UNGRADABLE_CALL = private("RS-NO-DECISION", "Ungradable: no referral decision")
NO_SCORE = private("RS-NO-SCORE", "No referral score")
OEDEMA_SCORE = private("RS-DME-SCORE", "Macular oedema risk score")
OEDEMA_POINT = private("RS-DME-POINT", "Macular oedema risk operating point")
OEDEMA_CALL = private("RS-DME-RISK", "Macular oedema risk call")
AT_RISK = private("RS-DME-AT-RISK", "At risk of macular oedema: at or above its operating point")
NOT_AT_RISK = private("RS-DME-BELOW", "Below the macular oedema risk operating point")
GRADABLE = private("RS-GRADABLE", "Gradable")
UNGRADABLE = private("RS-UNGRADABLE", "Ungradable: retake the photograph")
UNGRADABLE_REASON = private("RS-UNGRADABLE-WHY", "Reason the photograph is ungradable")
REASONS = {
    "too dark": private("RS-TOO-DARK", "Too dark"),
    "washed out": private("RS-WASHED-OUT", "Washed out"),
    "out of focus": private("RS-OUT-OF-FOCUS", "Out of focus"),
    "too little of the field usable": private("RS-FIELD-UNUSABLE", "Too little of the field usable"),
}
"""``model.screening.quality.REASONS``, coded."""

# Standard codes, as DICOM PS3.16 lists them (pydicom's code dictionary).
NUMBER_OF_LESIONS = CodedConcept("246206008", "SCT", "Number of lesions")
AREA = CodedConcept("42798000", "SCT", "Area")
OPERATING_POINT = CodedConcept("111071", "DCM", "CAD Operating Point")
IMAGE_QUALITY = CodedConcept("111101", "DCM", "Image Quality")
COMMENT = CodedConcept("121106", "DCM", "Comment")
QUALITATIVE_EVALUATIONS = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
LESION_UNIT = CodedConcept("{lesions}", "UCUM", "lesions")
PIXEL_UNIT = CodedConcept("{pixels}", "UCUM", "pixels")
RATIO_UNIT = CodedConcept("{ratio}", "UCUM", "ratio")
NO_UNITS = CodedConcept("1", "UCUM", "no units")


def algorithm(model_name: str, model_version: str, thresholds: dict[str, float]) -> hd.sr.AlgorithmIdentification:
    parameters = [f"model {model_name}"] + [f"{lesion} threshold {threshold:g}" for lesion, threshold in thresholds.items()]
    return hd.sr.AlgorithmIdentification(name="RedSeg", version=model_version, parameters=parameters)


def measurement(name: CodedConcept, value: float, unit: CodedConcept) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=name, value=value, unit=unit)


def lesion_groups(
    summary: ScreeningSummary, source: Dataset, seg: Dataset, algorithm_id: hd.sr.AlgorithmIdentification
) -> list[hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations]:
    """Per lesion of the summary, its count and area, on the lesion's segment of the SEG (frame n is segment n)."""
    numbers = segment_numbers(seg)
    missing = [lesion for lesion in summary.lesions if lesion not in numbers]
    if missing:
        raise ValueError(f"the SEG has no segment for {', '.join(missing)}")
    groups = []
    for lesion, found in summary.lesions.items():
        number = numbers[lesion]
        segment = hd.sr.ReferencedSegmentationFrame(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=number,
            segment_number=number,
            source_image=hd.sr.SourceImageForSegmentation(source.SOPClassUID, source.SOPInstanceUID),
        )
        # The frame says which segment (frame n is segment n): PS3.3 C.18.3.1 forbids naming both.
        del segment[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=uid.generate_uid(), identifier=lesion),
            referenced_segment=segment,
            finding_type=LESION_CODES[lesion],
            finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            algorithm_id=algorithm_id,
            finding_sites=[hd.sr.FindingSite(codes.SCT.Retina)],
            measurements=[
                measurement(NUMBER_OF_LESIONS, found.count, LESION_UNIT),
                measurement(AREA, found.area_pixels, PIXEL_UNIT),
                measurement(AREA_SHARE, found.area_fraction_fov, RATIO_UNIT),
            ],
        ))
    return groups


def referral_call(summary: ScreeningSummary) -> CodedConcept:
    if not summary.quality.gradable:
        return UNGRADABLE_CALL
    if summary.referral is None:
        return NO_SCORE
    return REFER if summary.referral.refer else BELOW


def photograph_group(
    summary: ScreeningSummary, source: Dataset, algorithm_id: hd.sr.AlgorithmIdentification
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """The whole photograph's figures: field of view, gradable share, quality, referral and the risk of macular oedema."""
    fov = summary.field_of_view
    measurements = [measurement(FOV_AREA, fov.area_pixels, PIXEL_UNIT), measurement(GRADABLE_SHARE, fov.gradable_fraction, RATIO_UNIT)]
    if summary.referral is not None:
        measurements += [measurement(SCORE, summary.referral.score, NO_UNITS),
                         measurement(OPERATING_POINT, summary.referral.operating_point, NO_UNITS)]
    evaluations = [hd.sr.QualitativeEvaluation(IMAGE_QUALITY, GRADABLE if summary.quality.gradable else UNGRADABLE)]
    evaluations += [hd.sr.QualitativeEvaluation(UNGRADABLE_REASON, REASONS[reason]) for reason in summary.quality.reasons]
    evaluations.append(hd.sr.QualitativeEvaluation(REFERRAL, referral_call(summary)))
    risk = summary.macular_oedema
    if risk is not None:
        measurements += [measurement(OEDEMA_SCORE, risk.score, NO_UNITS), measurement(OEDEMA_POINT, risk.operating_point, NO_UNITS)]
        evaluations.append(hd.sr.QualitativeEvaluation(OEDEMA_CALL, AT_RISK if risk.at_risk else NOT_AT_RISK))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid.generate_uid(), identifier="photograph"),
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Retina)],
        measurements=measurements,
        qualitative_evaluations=evaluations,
        source_images=[hd.sr.SourceImageForMeasurementGroup(source.SOPClassUID, source.SOPInstanceUID)],
    )


def comments(summary: ScreeningSummary) -> hd.sr.ContainerContentItem:
    """TID 1500's qualitative evaluations container: the disclaimer (and the note) as TEXT comments."""
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = hd.sr.ContentSequence([
        hd.sr.TextContentItem(name=COMMENT, value=text, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        for text in (summary.note, summary.disclaimer) if text
    ])
    return container


def observer(model_name: str, model_version: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=uid.generate_uid(entropy_srcs=["RedSeg", model_name, model_version]),
        name="RedSeg", manufacturer_name="RedSeg", model_name=model_name,
    )
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device))


def structured_report(
    source: Dataset,
    seg: Dataset,
    summary: ScreeningSummary,
    thresholds: dict[str, float],
    model_name: str,
    model_version: str,
) -> hd.sr.ComprehensiveSR:
    """The screening summary of ``source`` as an SR in its study, referencing it and ``seg`` (its RedSeg SEG).

    ``thresholds``: those the summary counted at (the checkpoint's operating thresholds), named in the
    algorithm's parameters."""
    algorithm_id = algorithm(model_name, model_version, thresholds)
    report = hd.sr.MeasurementReport(
        observation_context=observer(model_name, model_version),
        procedure_reported=PROCEDURE,
        imaging_measurements=[*lesion_groups(summary, source, seg, algorithm_id), photograph_group(summary, source, algorithm_id)],
        referenced_images=[highdicom_source(source)],
    )
    report[0].ContentSequence.append(comments(summary))
    sr = hd.sr.ComprehensiveSR(
        evidence=[seg, source],
        content=report[0],
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="RedSeg",
        is_complete=True,
        series_description="RedSeg screening summary",
    )
    sr.CodingSchemeIdentificationSequence = [coding_scheme()]
    return sr


def report_values(dataset: Dataset) -> dict:
    """What a RedSeg SR says, read back with highdicom: per lesion its count, area (pixels) and share of the
    field of view, and the photograph's figures and calls, by code meaning (``{'MA': {...}, 'photograph': {...}}``)."""
    sr = hd.sr.ComprehensiveSR.from_dataset(dataset)
    values: dict = {}
    for group in sr.content.get_planar_roi_measurement_groups():
        values[group.tracking_identifier] = {m.name.meaning: m.value for m in group.get_measurements()}
        values[group.tracking_identifier]["segmentation"] = group.referenced_segmentation_frame[0].referenced_sop_instance_uid
    for group in sr.content.get_image_measurement_groups():
        found = {m.name.meaning: m.value for m in group.get_measurements()}
        for evaluation in group.get_qualitative_evaluations():
            found.setdefault(evaluation.name.meaning, []).append(evaluation.value.meaning)
        found["source"] = [image.referenced_sop_instance_uid for image in group.source_images]
        values[group.tracking_identifier] = found
    values["comments"] = [
        item.TextValue for container in sr.ContentSequence if container.ValueType == "CONTAINER"
        and container.ConceptNameCodeSequence[0].CodeValue == QUALITATIVE_EVALUATIONS.value
        for item in container.ContentSequence if item.ValueType == "TEXT"
    ]
    return values
