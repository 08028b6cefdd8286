"""What /segment costs besides the network: decoding, masks, statistics, PNGs and the answer's body.

    .venv/bin/python bench/response.py [--image assets/IDRiD_05.jpg] [--repeats 5] [--checkpoint PATH]

One inference on the image (its time is printed for scale), then, interleaved and repeated,
the non-network work of one request with the default outputs (masks + probabilities):
- before: the pipeline as it was (numpy masks, statistics and uint16 conversion, PNGs with
  libpng's default adaptive filters, base64 in JSON), rebuilt here from those primitives;
- JSON now: the lesion masks, then service.rendering.render beside the screening summary (as the
  service runs them), then the JSON answer (base64 PNGs);
- zip now: the same, then the zip answer (Accept: application/zip, no base64);
- DICOM SEG: the BINARY and FRACTIONAL SEG of the same image sent as a DICOM photograph.
Medians of wall time, and the answer's size.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import service  # noqa: E402,F401  (first: OpenCV limits, as in the server)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from model import load_checkpoint, predict_probabilities  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402
from model.config import LESIONS  # noqa: E402
from model.formats.dicom import read_dicom, to_bytes  # noqa: E402
from model.formats.dicom_seg import segmentation  # noqa: E402
from model.screening.masks import lesion_masks, threshold_level  # noqa: E402
from service.decoding import decode_upload  # noqa: E402
from service.rendering import parse_outputs, render  # noqa: E402
from service.responses import AnswerFormat, answer_response  # noqa: E402
from model.screening.summary import summarise  # noqa: E402
from service.schemas import ImageInfo, ModelInfo, SegmentResponse, Timings  # noqa: E402
from service.schemas import ScreeningResult  # noqa: E402
from service.settings import Settings  # noqa: E402


def answer_of(lesions: dict, screening: ScreeningResult) -> SegmentResponse:
    return SegmentResponse(
        model=ModelInfo(name="bench", version="0", sha256="0"),
        image=ImageInfo(width=1, height=1),
        lesions=lesions,
        screening=screening,
        timings=Timings(decode_s=0, queue_wait_s=0, infer_s=0, encode_s=0, total_s=0),
    )


def before(image: np.ndarray, probabilities: np.ndarray, thresholds: dict[str, float], pool: ThreadPoolExecutor,
           screening: ScreeningResult) -> int:
    """The pipeline as served before the lean answer, from the same primitives it used (the screening
    summary, which came later, is given ready-made)."""

    def png_b64(array: np.ndarray) -> str:
        ok, buffer = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return base64.b64encode(buffer.tobytes()).decode("ascii")

    levels = {l: np.rint(np.clip(probabilities[c], 0.0, 1.0) * 65535.0).astype(np.uint16) for c, l in enumerate(LESIONS)}
    masks = {l: np.where(levels[l] >= threshold_level(thresholds[l]), np.uint8(255), np.uint8(0)) for l in LESIONS}
    futures = {}
    for lesion in LESIONS:
        futures[lesion, "mask_png"] = pool.submit(png_b64, masks[lesion])
        futures[lesion, "probability_png"] = pool.submit(png_b64, levels[lesion])
    lesions = {}
    for lesion in LESIONS:
        binary = (masks[lesion] > 0).astype(np.uint8)
        area = int(binary.sum())
        components = cv2.connectedComponents(binary, connectivity=8)[0] - 1 if area else 0
        lesions[lesion] = {"threshold": thresholds[lesion], "area_pixels": area, "area_fraction": area / binary.size,
                           "components": int(components), "mask_png": futures[lesion, "mask_png"].result(),
                           "probability_png": futures[lesion, "probability_png"].result()}
    return len(answer_of(lesions, screening).model_dump_json())


def now(fmt: AnswerFormat, image, probabilities, checkpoint, outputs, pool: ThreadPoolExecutor) -> int:
    """As the service does it: the masks at the checkpoint's thresholds, then render and the screening
    summary side by side, then the answer."""
    masks = lesion_masks(probabilities, checkpoint.thresholds)
    rendering = pool.submit(render, image, masks, outputs)
    summary = pool.submit(summarise, image, probabilities, checkpoint, masks)
    rendered = rendering.result()
    return len(answer_response(fmt, answer_of(rendered.lesions, ScreeningResult.of(summary.result())), rendered.files).body)


def dicom_photo_bytes(image: np.ndarray) -> bytes:
    from tests.dicom_files import photograph, to_bytes as file_bytes  # the tests' OP builder (JPEG baseline)

    return file_bytes(photograph(image, "jpeg"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=str(ROOT / "assets" / "IDRiD_05.jpg"))
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    settings = Settings(checkpoint=Path(args.checkpoint))
    checkpoint = load_checkpoint(settings.checkpoint, "cpu")
    data = Path(args.image).read_bytes()
    image = decode_upload(data, settings.max_pixels)
    started = time.perf_counter()
    probabilities = predict_probabilities(checkpoint.model, image, settings.tiles, checkpoint.calibration)
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]}; one inference {time.perf_counter() - started:.2f} s (for scale)")
    thresholds, outputs = dict(checkpoint.thresholds), parse_outputs("masks,probabilities")
    source = read_dicom(dicom_photo_bytes(image)).dataset
    pool = ThreadPoolExecutor(2)
    screening = ScreeningResult.of(summarise(image, probabilities, checkpoint))

    def seg(kind: str) -> int:
        return len(to_bytes(segmentation(source, probabilities, thresholds, kind, checkpoint.name, checkpoint.version)))

    stages: dict[str, Callable[[], int]] = {
        "decode JPEG upload": lambda: decode_upload(data, settings.max_pixels).size * 0,
        "before: render + JSON (base64)": lambda: before(image, probabilities, thresholds, pool, screening),
        "now: render + JSON (base64)": lambda: now(AnswerFormat.JSON, image, probabilities, checkpoint, outputs, pool),
        "now: render + zip": lambda: now(AnswerFormat.ZIP, image, probabilities, checkpoint, outputs, pool),
        "DICOM SEG, BINARY": lambda: seg("binary"),
        "DICOM SEG, FRACTIONAL": lambda: seg("fractional"),
    }
    times: dict[str, list[float]] = {name: [] for name in stages}
    sizes: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, stage in stages.items():
            started = time.perf_counter()
            sizes[name] = stage()
            times[name].append(time.perf_counter() - started)
    print(f"medians of {args.repeats}, interleaved:")
    print("| stage | median s | answer MB |\n|---|---:|---:|")
    for name in stages:
        size = f"{sizes[name] / 1e6:.1f}" if sizes[name] else ""
        print(f"| {name} | {statistics.median(times[name]):.3f} | {size} |")


if __name__ == "__main__":
    main()
