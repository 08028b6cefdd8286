import cv2
import numpy as np
import pytest

from model.checkpoint import FAST_CHECKPOINT, load_checkpoint
from model.formats.images import read_image
from model.screening.masks import lesion_masks
from model.screening.quality import REASONS, assess_quality
from model.screening.summary import csv_row, one_line, summarise
from tests.model.conftest import SAMPLE_IMAGE


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return read_image(SAMPLE_IMAGE)


def exposed(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def test_a_real_photograph_is_gradable(sample):
    quality = assess_quality(sample)
    assert quality.gradable and quality.reasons == ()
    assert quality.brightness > 100 and quality.focus > 0.3 and quality.usable_share > 0.9


@pytest.mark.parametrize(
    "degrade, reason",
    [
        (lambda image: exposed(image, 0.1), "too dark"),
        (lambda image: exposed(image, 4.0), "washed out"),
        (lambda image: cv2.GaussianBlur(image, (0, 0), 24), "out of focus"),
        (lambda image: np.zeros_like(image), "too dark"),
    ],
    ids=["under-exposed", "over-exposed", "defocused", "black"],
)
def test_a_degraded_photograph_is_ungradable_and_says_why(sample, degrade, reason):
    quality = assess_quality(degrade(sample))
    assert not quality.gradable and reason in quality.reasons and set(quality.reasons) <= set(REASONS)


def test_an_ungradable_photograph_gets_no_referral_decision(sample):
    checkpoint = load_checkpoint(FAST_CHECKPOINT)
    assert checkpoint.referral is not None and checkpoint.macular_oedema is not None
    dark = cv2.resize(exposed(sample, 0.1), (1072, 712), interpolation=cv2.INTER_AREA)
    probabilities = np.zeros((len(checkpoint.thresholds), *dark.shape[:2]), np.float32)
    summary = summarise(dark, probabilities, checkpoint, lesion_masks(probabilities, checkpoint.thresholds))
    assert summary.referral is None and summary.macular_oedema is None and summary.note.startswith("ungradable (too dark")
    assert "; ungradable (too dark" in one_line(summary)
    assert one_line(summary).endswith("): retake the photograph; no referral decision")
    row = csv_row("dark.jpg", summary)
    assert row["gradable"] == 0 and row["ungradable_reasons"].startswith("too dark") and row["refer"] == ""
    assert row["macular_oedema_risk"] == row["macular_oedema_at_risk"] == ""
