"""POST /segment: an uploaded fundus photograph in, lesion masks, probabilities and statistics out."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from model.checkpoint import Checkpoint
from model.config import ALL_LESIONS, LESION_NAMES
from model.formats.dicom_seg import SEG_TYPES
from model.fov import Disc
from model.screening.masks import lesion_masks
from model.screening.summary import ScreeningSummary, summarise
from service.admission import Overloaded
from service.decoding import decode_photo
from service.deps import Authorized, MetricsDep, PoolDep, SettingsDep
from service.metrics import Metrics
from service.dicom import dicom_files, require_dicom_source
from service.rendering import (
    DEFAULT_OUTPUTS, OUTPUTS, Outputs, Rendered, lesion_not_served, outputs_pattern, parse_outputs, render,
)
from service.errors import ServiceError, internal_error, unavailable
from service.image_checks import pixels_to_hold
from service.responses import ANSWER_CONTENT, AnswerFormat, answer_response, dicom_response, negotiate
from service.schemas import ErrorResponse, ImageInfo, ModelInfo, ScreeningResult, SegmentResponse, Timings
from service.upload import FIELD, read_image_field
from service.worker import InferenceResult, Job, WorkerPool

router = APIRouter(tags=["segmentation"])

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/tiff", "image/bmp", "application/dicom")

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "A colour fundus photograph: JPEG, PNG, TIFF or BMP (grey, RGB or RGBA; 8 or 16 bit), "
                            "or DICOM (Ophthalmic Photography 8 Bit or VL Photographic Image Storage).",
                        }
                    },
                },
                "encoding": {FIELD: {"contentType": ", ".join(IMAGE_MEDIA_TYPES)}},
            }
        },
    }
}

ERRORS = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Empty, corrupt or truncated image, or a malformed multipart body.",
        401: "A bearer token is required and was missing or wrong.",
        408: "The request body took longer than REDSEG_BODY_TIMEOUT_S to arrive.",
        413: "The upload has too many bytes or too many pixels.",
        406: "The Accept header asks for a format RedSeg does not offer, or for DICOM with a non-DICOM upload.",
        415: "Not an image, an unsupported content type, or a DICOM file that is not a supported photograph.",
        422: "Bad parameters, no 'image' file field, a photograph too small for the model (its field of view "
        "too few pixels across: the detail says how many are needed), or not a colour fundus photograph.",
        500: "Inference failed; the message carries an error id found in the server log.",
        503: "Busy (no answer possible within the request timeout), timed out, not ready, or shutting down: see Retry-After.",
    }.items()
}

THRESHOLDS = {
    lesion: Annotated[
        float | None,
        Query(ge=0.0, le=1.0, allow_inf_nan=False, description=f"Probability threshold for the {LESION_NAMES[lesion]} "
              f"({lesion}) mask (default: the model's operating threshold)."),
    ]
    for lesion in ALL_LESIONS
}
"""The ``threshold_<lesion>`` parameters' types; one for a lesion the served model does not segment is a 422."""

OUTPUTS_DESCRIPTION = (
    f"Comma-separated: any of {', '.join(OUTPUTS)} (the PNGs made; 'none' or nothing for statistics only), and any of "
    "the lesions {lesions} (the lesions answered; none named: every lesion the served model segments)."
)


@dataclass(frozen=True)
class SegmentOptions:
    outputs: Outputs
    thresholds: dict[str, float]
    """The thresholds the request sets, by lesion."""
    seg_type: str


def segment_options(
    pool: PoolDep,
    threshold_ma: THRESHOLDS["MA"] = None,
    threshold_he: THRESHOLDS["HE"] = None,
    threshold_ex: THRESHOLDS["EX"] = None,
    threshold_se: THRESHOLDS["SE"] = None,
    outputs: Annotated[
        str,
        Query(
            description=OUTPUTS_DESCRIPTION.format(lesions=", ".join(ALL_LESIONS)),
            json_schema_extra={"pattern": outputs_pattern(ALL_LESIONS)},
        ),
    ] = DEFAULT_OUTPUTS,
    seg_type: Annotated[
        str, Query(pattern=f"^({'|'.join(SEG_TYPES)})$", description="DICOM SEG answer: binary masks or fractional probabilities.")
    ] = SEG_TYPES[0],
) -> SegmentOptions:
    """The request's parameters, checked against the served model's lesions (422 for one it does not segment)."""
    served = ALL_LESIONS if pool is None else pool.lesions
    asked = {"MA": threshold_ma, "HE": threshold_he, "EX": threshold_ex, "SE": threshold_se}
    thresholds = {lesion: value for lesion, value in asked.items() if value is not None}
    for lesion in thresholds:
        if lesion not in served:
            raise lesion_not_served(f"threshold_{lesion.lower()}", lesion, served)
    return SegmentOptions(parse_outputs(outputs, served), thresholds, seg_type)


def describe_served_lesions(spec: dict[str, Any], lesions: tuple[str, ...]) -> None:
    """The OpenAPI document's /segment as the served model answers it: ``threshold_*`` and ``outputs``'s lesions for
    its lesions only."""
    operation = spec["paths"]["/segment"]["post"]
    parameters = []
    for parameter in operation["parameters"]:
        name = parameter["name"]
        if name.startswith("threshold_") and name.removeprefix("threshold_").upper() not in lesions:
            continue
        if name == "outputs":
            described = {"description": OUTPUTS_DESCRIPTION.format(lesions=", ".join(lesions))}
            schema = parameter["schema"] | described | {"pattern": outputs_pattern(lesions)}
            parameter = parameter | described | {"schema": schema}
        parameters.append(parameter)
    operation["parameters"] = parameters


class ClientGone(Exception):
    pass


async def _client_gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _infer(request: Request, pool: WorkerPool, job: Job, timeout_s: float) -> InferenceResult:
    """Wait for the job; if the client leaves or the time runs out first, the worker skips it."""
    watcher = asyncio.ensure_future(_client_gone(request))
    try:
        await asyncio.wait({job.future, watcher}, timeout=max(timeout_s, 0.0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if job.future.done():
        return job.future.result()
    job.abandoned = True
    if watcher.done() and not watcher.cancelled():
        raise ClientGone
    raise unavailable("timeout", f"no result within the {timeout_s:.0f} s request timeout", pool.retry_after())


async def _render_and_summarise(
    image: np.ndarray, probabilities: np.ndarray, thresholds: dict[str, float], wanted: Outputs, ckpt: Checkpoint,
    disc: Disc | None,
) -> tuple[Rendered, ScreeningSummary]:
    """The statistics of every lesion, the PNGs asked for and the screening summary, side by side in the thread pool."""
    masks = await run_in_threadpool(lesion_masks, probabilities, thresholds)
    return await asyncio.gather(
        run_in_threadpool(render, image, masks, wanted),
        run_in_threadpool(summarise, image, probabilities, ckpt, masks, disc),
    )


@router.post(
    "/segment",
    response_model=SegmentResponse,
    summary="Segment the lesions of a fundus photograph: microaneurysms (MA) and haemorrhages (HE), and hard (EX) and "
    "soft (SE) exudates with a model that segments them",
    dependencies=[Authorized],
    responses={200: {"content": ANSWER_CONTENT}} | ERRORS,
    openapi_extra=UPLOAD_BODY,
)
async def segment(
    request: Request,
    settings: SettingsDep,
    pool: PoolDep,
    metrics: MetricsDep,
    options: Annotated[SegmentOptions, Depends(segment_options)],
) -> Response:
    wanted = options.outputs
    answer_format = negotiate(request.headers.get("accept"))
    if pool is None or not pool.ready:
        raise request.app.state.loading.not_ready(pool)
    data = await read_image_field(request, settings.max_upload_bytes)
    started = time.perf_counter()
    try:
        with pool.admit(pixels_to_hold(data, settings.max_pixels)) as reservation:
            photo = await run_in_threadpool(decode_photo, data, settings.max_pixels)
            del data
            mapping = await pool.map(photo.pixels, reservation)
            if answer_format.is_dicom:
                require_dicom_source(photo.dicom)
                wanted = Outputs(frozenset())  # the SEG holds every lesion, and no PNGs are made
            decoded = time.perf_counter()
            job = pool.submit(photo.pixels, mapping)
            try:
                result = await _infer(request, pool, job, settings.request_timeout_s - (decoded - started))
            except (ServiceError, ClientGone):
                raise
            except Exception as exc:
                metrics.inference_errors.inc()
                return internal_error("inference failed", exc)
            inferred = time.perf_counter()
            thresholds = dict(pool.checkpoint.thresholds) | options.thresholds
            rendered, summary = await _render_and_summarise(
                photo.pixels, result.probabilities, thresholds, wanted, pool.checkpoint, mapping.disc
            )
            if answer_format.is_dicom:
                with_sr = summary if answer_format is AnswerFormat.DICOM_PARTS else None
                parts = await run_in_threadpool(
                    dicom_files, photo.dicom, result.probabilities, thresholds, options.seg_type, pool.checkpoint, with_sr
                )
    except Overloaded as exc:
        raise unavailable(exc.reason, exc.detail, exc.retry_after_s) from None
    except ClientGone:
        metrics.rejected.labels(reason="client_disconnected").inc()
        return Response(status_code=499)
    finished = time.perf_counter()
    timings = Timings(decode_s=decoded - started, queue_wait_s=result.queue_wait_s, infer_s=result.infer_s,
                      encode_s=finished - inferred, total_s=finished - started)
    _observe(metrics, photo.pixels, rendered, summary, timings)
    ckpt = pool.checkpoint
    height, width = photo.pixels.shape[:2]
    answer = SegmentResponse(
        model=ModelInfo(name=ckpt.name, version=ckpt.version, sha256=ckpt.sha256, device=result.device),
        image=ImageInfo(width=width, height=height),
        lesions=wanted.pick(rendered.lesions),
        screening=ScreeningResult.of(summary, wanted.answers),
        timings=timings,
    )
    if answer_format.is_dicom:
        return dicom_response(parts, answer)
    return await run_in_threadpool(answer_response, answer_format, answer, rendered.files)


def _observe(metrics: Metrics, image: np.ndarray, rendered: Rendered, summary: ScreeningSummary, timings: Timings) -> None:
    """The request's stage times and output statistics, for the service's metrics."""
    metrics.stage_seconds.labels(stage="decode").observe(timings.decode_s)
    metrics.stage_seconds.labels(stage="encode").observe(timings.encode_s)
    metrics.image_pixels.observe(image.shape[0] * image.shape[1])
    for lesion, stats in rendered.lesions.items():
        metrics.area_fraction.labels(lesion=lesion).observe(stats.area_fraction)
        metrics.components.labels(lesion=lesion).observe(stats.components)
    if summary.referral is not None:
        metrics.referral_score.observe(summary.referral.score)
    if summary.macular_oedema is not None:
        metrics.macular_oedema_risk.observe(summary.macular_oedema.score)
    for reason in summary.quality.reasons:
        metrics.ungradable.labels(reason=reason).inc()
