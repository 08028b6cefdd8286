"""The answer's format, chosen by the Accept header: JSON with base64 PNGs, a zip of files, a DICOM SEG, or
the SEG and the screening summary's SR together as DICOMweb sends instances (multipart/related)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import zipfile
from enum import Enum
from io import BytesIO

from fastapi import Response

from service.rendering import FILE_NAMES, OVERLAY_FILE
from service.errors import ServiceError
from service.schemas import SegmentResponse


class AnswerFormat(str, Enum):
    JSON = "application/json"
    ZIP = "application/zip"
    DICOM = "application/dicom"
    DICOM_PARTS = 'multipart/related; type="application/dicom"'
    """The SEG and the SR, each an application/dicom part, as a DICOMweb server answers for instances."""

    @property
    def is_dicom(self) -> bool:
        return self in (AnswerFormat.DICOM, AnswerFormat.DICOM_PARTS)


SUMMARY_FILE = "result.json"
"""In the zip: the JSON answer, with its base64 image fields null (the images are the files beside it)."""
_WILDCARDS = ("*/*", "application/*")


def negotiate(accept: str | None) -> AnswerFormat:
    """The client's most preferred format that RedSeg offers; JSON for no Accept header or a wildcard."""
    if not accept or not accept.strip():
        return AnswerFormat.JSON
    offered = {fmt.value: fmt for fmt in AnswerFormat}
    for _, media in sorted(_ranked(accept)):
        if media in offered:
            return offered[media]
        if media in _WILDCARDS:
            return AnswerFormat.JSON
    raise ServiceError(
        406, "not_acceptable", f"cannot answer as {accept!r}: accept {', '.join(offered)} (or */*)"
    )


def _ranked(accept: str) -> list[tuple[tuple[float, int], str]]:
    """(sort key, media type) of each acceptable entry: highest q first, then the order given."""
    ranked = []
    for position, entry in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in entry.split(";"))
        quality, kind = 1.0, None
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
            elif name.strip().lower() == "type":
                kind = value.strip().strip('"').lower()
        if media.lower() == "multipart/related" and kind == AnswerFormat.DICOM.value:
            media = AnswerFormat.DICOM_PARTS.value  # multipart/related of another type is not offered
        if quality > 0 and media:
            ranked.append(((-quality, position), media.lower()))
    return ranked


def json_body(answer: SegmentResponse, files: dict[str, bytes]) -> bytes:
    """The JSON answer, each PNG file base64-encoded in its field.

    The fields are dumped as placeholders and the base64 text spliced in afterwards: base64 needs no
    JSON escaping, and the 30 MB of it are copied once instead of passing through the serializer.
    """
    nonce = secrets.token_hex(8)

    def placeholder(name: str) -> str | None:
        return None if name not in files else f"@{nonce}:{name}@"

    lesions = {
        lesion: result.model_copy(
            update={
                "mask_png": placeholder(FILE_NAMES["mask"].format(lesion=lesion)),
                "probability_png": placeholder(FILE_NAMES["probability"].format(lesion=lesion)),
            }
        )
        for lesion, result in answer.lesions.items()
    }
    text = answer.model_copy(update={"lesions": lesions, "overlay_png": placeholder(OVERLAY_FILE)}).model_dump_json()
    pattern = re.compile(rf"@{nonce}:([^@]+)@".encode())
    return pattern.sub(lambda match: base64.b64encode(files[match[1].decode()]), text.encode())


def zip_body(answer: SegmentResponse, files: dict[str, bytes]) -> bytes:
    """One archive: result.json and the PNG files, stored as they are (PNGs are compressed already)."""
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(SUMMARY_FILE, answer.model_dump_json(indent=2))
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


SCREENING_HEADER = "X-RedSeg-Screening"


def dicom_response(parts: list[bytes], answer: SegmentResponse) -> Response:
    """The DICOM SEG (one part), or the SEG and SR as multipart/related; the screening summary also as a JSON header."""
    if len(parts) == 1:
        response = file_response(parts[0], AnswerFormat.DICOM, "redseg-seg.dcm")
    else:
        response = multipart_related(parts)
    if answer.screening is not None:
        response.headers[SCREENING_HEADER] = json.dumps(answer.screening.model_dump(mode="json"), separators=(",", ":"))
    return response


def multipart_related(parts: list[bytes]) -> Response:
    """DICOM instances as DICOMweb sends them (PS3.18 8.6.1.2): multipart/related, each part application/dicom."""
    boundary = secrets.token_hex(16)
    while any(boundary.encode() in part for part in parts):
        boundary = secrets.token_hex(16)
    body = b"".join(b"--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n" % (boundary.encode(), part) for part in parts)
    return Response(body + b"--%s--\r\n" % boundary.encode(), media_type=f"{AnswerFormat.DICOM_PARTS.value}; boundary={boundary}")


def file_response(body: bytes, fmt: AnswerFormat, filename: str | None = None) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'} if filename else None
    return Response(body, media_type=fmt.value, headers=headers)


def answer_response(fmt: AnswerFormat, answer: SegmentResponse, files: dict[str, bytes]) -> Response:
    """The JSON or zip answer (the DICOM one is built from the source file: service.dicom)."""
    if fmt is AnswerFormat.ZIP:
        return file_response(zip_body(answer, files), fmt, "redseg-result.zip")
    return file_response(json_body(answer, files), AnswerFormat.JSON)


ANSWER_CONTENT = {
    AnswerFormat.ZIP.value: {
        "schema": {"type": "string", "format": "binary"},
        "description": f"Accept: application/zip. {SUMMARY_FILE} (this JSON answer, image fields null) and the PNG "
        "files asked for by `outputs`, per lesion answered: <lesion>_mask.png (8-bit, 255 = lesion; MA_mask.png, "
        "HE_mask.png, ...) and <lesion>_probability.png (16-bit, probability = value / 65535); overlay.png.",
    },
    AnswerFormat.DICOM.value: {
        "schema": {"type": "string", "format": "binary"},
        "description": "Accept: application/dicom, for a DICOM upload only. A DICOM Segmentation of the photograph "
        "with a segment per lesion the model segments, MA and HE (and EX and SE for a model that segments exudates): "
        "BINARY masks, or FRACTIONAL probabilities with seg_type=fractional. "
        f"The screening summary (the JSON answer's `screening`) comes in the {SCREENING_HEADER} header as JSON.",
    },
    AnswerFormat.DICOM_PARTS.value: {
        "schema": {"type": "string", "format": "binary"},
        "description": "Accept: multipart/related; type=\"application/dicom\", for a DICOM upload only. Two "
        "application/dicom parts, as DICOMweb (WADO-RS) sends instances: the DICOM SEG (as for application/dicom), "
        "then a DICOM Structured Report of the screening summary (TID 1500) that references the photograph and the SEG.",
    },
}
"""The 200 answer's other media types, for the OpenAPI document."""
