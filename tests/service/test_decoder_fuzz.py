"""Fuzzing the upload decoders (JPEG, PNG, TIFF, BMP, DICOM) with a bounded, seeded corpus of mutated files.

Each format's seed files are mutated (truncated, bytes flipped, runs overwritten, bytes
inserted or dropped, header size fields blown up); every mutant goes through what the
service runs before the model (the header look and the decode). Every outcome must be a
decoded image or a 4xx ServiceError with a message, never another exception or a crash.

To fuzz a new format, add a function that returns its seed files to ``SEEDS``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from service.decoding import decode_photo
from service.errors import ServiceError
from service.image_checks import pixels_to_hold
from tests.dicom_files import photograph
from tests.dicom_files import to_bytes as dicom_bytes

pytestmark = pytest.mark.filterwarnings("ignore:The decoded RLE segment:UserWarning")  # pydicom on a mutated RLE

MUTANTS_PER_SEED = 150
MAX_PIXELS = 4_000_000
outcomes: dict[str, dict[str, int]] = {}


def encode(extension: str, image: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, buffer = cv2.imencode(extension, image, list(params))
    assert ok
    return buffer.tobytes()


def test_images() -> Iterator[np.ndarray]:
    rng = np.random.default_rng(0)
    colour = cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    yield colour
    yield cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)


test_images.__test__ = False  # a helper, not a test


def jpeg_seeds() -> list[bytes]:
    seeds = [encode(".jpg", image) for image in test_images()]
    return seeds + [encode(".jpg", next(test_images()), (cv2.IMWRITE_JPEG_PROGRESSIVE, 1))]


def png_seeds() -> list[bytes]:
    colour = next(test_images())
    return [encode(".png", image) for image in test_images()] + [encode(".png", colour.astype(np.uint16) * 257)]


def tiff_seeds() -> list[bytes]:
    colour = next(test_images())
    return [encode(".tiff", image) for image in test_images()] + [encode(".tiff", colour.astype(np.uint16) * 257)]


def bmp_seeds() -> list[bytes]:
    return [encode(".bmp", image) for image in test_images()]


def dicom_seeds() -> list[bytes]:
    rgb = cv2.cvtColor(next(test_images()), cv2.COLOR_BGR2RGB)
    return [dicom_bytes(photograph(rgb, encoding)) for encoding in ("explicit", "jpeg", "rle")]


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "jpeg": jpeg_seeds, "png": png_seeds, "tiff": tiff_seeds, "bmp": bmp_seeds, "dicom": dicom_seeds,
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    mutant = bytearray(data)
    kind = rng.choice(["truncate", "flip", "overwrite", "insert", "delete", "header"])
    at = rng.randrange(len(mutant))
    if kind == "truncate":
        return bytes(mutant[: rng.randrange(1, len(mutant))])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            mutant[rng.randrange(len(mutant))] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        mutant[at : at + rng.randint(1, 64)] = bytes([rng.choice([0x00, 0xFF, rng.randrange(256)])]) * rng.randint(1, 64)
    elif kind == "insert":
        mutant[at:at] = rng.randbytes(rng.randint(1, 256))
    elif kind == "delete":
        del mutant[at : at + rng.randint(1, 256)]
    else:  # a size or length field near the start blown up
        at = rng.randrange(min(64, len(mutant) - 2))
        mutant[at : at + 2] = rng.choice([b"\xff\xff", b"\x7f\xff", b"\x00\x00"])
    return bytes(mutant)


def outcome(data: bytes) -> str:
    pixels_to_hold(data, MAX_PIXELS)
    try:
        image = decode_photo(data, MAX_PIXELS).pixels
    except ServiceError as error:
        assert 400 <= error.status < 500 and error.detail, (error.status, error.detail)
        return str(error.status)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    return "decoded"


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    """The counts for the README's reliability figures (shown with -s)."""
    yield
    for fmt, counts in outcomes.items():
        print(f"\nfuzzed {fmt}: {sum(counts.values())} mutants: {dict(sorted(counts.items()))}", end="")


@pytest.mark.parametrize("fmt", SEEDS)
def test_every_mutant_is_decoded_or_refused_with_a_4xx(fmt: str):
    rng = random.Random(f"redseg-fuzz-{fmt}")
    counts = outcomes.setdefault(fmt, {})
    for seed in SEEDS[fmt]():
        assert outcome(seed) == "decoded"
        for _ in range(MUTANTS_PER_SEED):
            result = outcome(mutate(seed, rng))
            counts[result] = counts.get(result, 0) + 1
    assert set(counts) - {"decoded"}, "no mutant was refused: the mutations are too gentle"
