"""Screening features of graded photographs, cached per model so that refitting the score costs no inference.

The cache is one JSON-lines file per model (``model_digest``: weights, config and thresholds, so
rewriting a checkpoint's referral score keeps it), feature version, tile settings and precision, appended to
after every photograph: an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from model.backends import backend_of
from model.checkpoint import Checkpoint
from model.formats.images import read_image
from model.inference import TileSettings, predict_probabilities
from model.precision import uses_bf16
from model.screening.features import FEATURES_VERSION, field_of_view, image_features
from training.referral.grading import GradedImage

DEFAULT_CACHE = Path(".cache") / "screening"


def cache_file(cache_dir: Path, digest: str, tiles: TileSettings, model) -> Path:
    """One file per model, feature version, tile settings and engine of the loaded ``model``: the precision
    ``tiles.precision`` gives on its device for the torch network, else the OpenVINO backend and its IR (whose name
    holds the recipe and ignored scope)."""
    precision = "bf16" if uses_bf16(next(model.parameters()).device, tiles.precision) else "fp32"
    settings = asdict(tiles) | {"precision": precision}
    tiles_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    backend = backend_of(model)
    engine, ir = (precision, "") if backend == "torch" else (backend, f"-{Path(model.ir).stem}")
    return cache_dir / f"{digest[:16]}-features-v{FEATURES_VERSION}-{engine}-tiles-{tiles_key}{ir}.jsonl"


def read_cache(path: Path) -> dict[str, dict[str, float]]:
    """Features by image name; a line cut short by an interrupted write is ignored."""
    if not path.is_file():
        return {}
    cached = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        cached[record["image"]] = record["features"]
    return cached


def photograph_features(path: Path, checkpoint: Checkpoint, tiles: TileSettings) -> dict[str, float]:
    """Every screening feature of one photograph on disk, as the service computes them."""
    image = read_image(path)
    probabilities = predict_probabilities(checkpoint.model, image, tiles, checkpoint.calibration)  # as served
    fov = field_of_view(image)
    return image_features(probabilities, checkpoint.thresholds, fov, image=image)


def extract_features(
    images: Sequence[GradedImage],
    checkpoint: Checkpoint,
    digest: str,
    tiles: TileSettings = TileSettings(),
    cache_dir: Path = DEFAULT_CACHE,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Features of every photograph, from the cache where present, by inference (and cached) otherwise."""
    path = cache_file(cache_dir, digest, tiles, checkpoint.model)
    cached = read_cache(path)
    missing = [image for image in images if image.name not in cached]
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            for image in tqdm(missing, desc="screening features", unit="photo", disable=not progress, file=sys.stderr):
                cached[image.name] = photograph_features(image.path, checkpoint, tiles)
                out.write(json.dumps({"image": image.name, "features": cached[image.name]}) + "\n")
                out.flush()
    return {image.name: cached[image.name] for image in images}
