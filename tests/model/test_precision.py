"""The fast path: precision choice, bf16 detection, and bf16 against fp32 on the bundled model and real images."""

from pathlib import Path

import numpy as np
import pytest
import torch

from model import LESIONS, TileSettings, load_checkpoint, predict_probabilities
from model.checkpoint import FAST_CHECKPOINT
from model.formats.images import read_image
from model.precision import autocast, cpu_has_native_bf16, uses_bf16
from training.data.idrid import read_mask
from tests.model.conftest import SAMPLE_IMAGE, fundus_like, tiny_model

IDRID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "idrid"
MASKS = IDRID / "A. Segmentation" / "2. All Segmentation Groundtruths" / "a. Training Set"

BF16_MAX_PROBABILITY_DIFFERENCE = 0.15
"""Largest |bf16 - fp32| of any pixel's probability (bundled model redseg-cpu 2, IDRiD_05 at 4288x2848: 0.103 MA, 0.056 HE)."""
BF16_MEAN_PROBABILITY_DIFFERENCE = 0.005
"""Largest mean |bf16 - fp32| over a map (measured 0.0005 MA, 0.0007 HE)."""
BF16_MASK_DISAGREEMENT = 0.05
"""Largest share of the pixels called lesion by either precision that only one of them calls lesion, at the
raw operating thresholds (measured 1.9 % MA, 1.4 % HE: the raw thresholds sit at 0.994 and 0.967,
where the raw scores bunch)."""
BF16_AP_DIFFERENCE = 0.01
"""Largest per-image average-precision difference, bf16 against fp32."""


def write_cpuinfo(tmp_path: Path, flags: str) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: fpu sse2 avx2 {flags}\n\n")
    return str(path)


@pytest.mark.parametrize("flags, native", [("avx512f avx512bw avx512_bf16", True), ("amx_bf16 amx_tile", True),
                                           ("avx512f avx512bw", False), ("", False)])
def test_native_bf16_detection_reads_the_cpu_flags(tmp_path, flags, native):
    assert cpu_has_native_bf16(write_cpuinfo(tmp_path, flags)) is native


def test_missing_cpuinfo_means_no_native_bf16(tmp_path):
    assert cpu_has_native_bf16(str(tmp_path / "absent")) is False


def test_forced_precisions_win_over_detection():
    cpu = torch.device("cpu")
    assert uses_bf16(cpu, "bf16") and not uses_bf16(cpu, "fp32")
    assert uses_bf16(cpu, "auto") == cpu_has_native_bf16()
    with pytest.raises(ValueError, match="precision"):
        uses_bf16(cpu, "fp16")
    with pytest.raises(ValueError, match="precision"):
        TileSettings(precision="half")


def test_autocast_runs_the_network_in_bf16_only_when_asked():
    model = tiny_model()
    x = torch.zeros(1, 3, 32, 32)
    with torch.inference_mode():
        with autocast(torch.device("cpu"), "bf16"):
            assert model(x).fused.dtype == torch.bfloat16
        with autocast(torch.device("cpu"), "fp32"):
            assert model(x).fused.dtype == torch.float32


def test_checkpoints_load_channels_last():
    model = load_checkpoint(FAST_CHECKPOINT).model
    conv = model.encoder.features[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


def test_fp32_path_is_unchanged_by_the_layout():
    """channels_last alone changes nothing but rounding: fp32 NHWC equals fp32 NCHW to 1e-5."""
    model = tiny_model()
    image = fundus_like(300, 420)
    nchw = predict_probabilities(model, image, TileSettings(precision="fp32"))
    nhwc = predict_probabilities(model.to(memory_format=torch.channels_last), image, TileSettings(precision="fp32"))
    np.testing.assert_allclose(nhwc, nchw, atol=1e-5)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = truth[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(hits.sum(), 1))


@pytest.fixture(scope="module")
def bundled_maps():
    """fp32 and bf16 maps of the bundled model on IDRiD_05 at full size (4288x2848)."""
    model = load_checkpoint(FAST_CHECKPOINT).model
    image = read_image(SAMPLE_IMAGE)
    fp32 = predict_probabilities(model, image, TileSettings(precision="fp32"))
    bf16 = predict_probabilities(model, image, TileSettings(precision="bf16"))
    return load_checkpoint(FAST_CHECKPOINT), fp32, bf16


@pytest.mark.slow  # the bundled model on the full-size sample, twice
def test_bf16_probabilities_stay_close_to_fp32_on_a_real_photograph(bundled_maps):
    _, fp32, bf16 = bundled_maps
    difference = np.abs(bf16 - fp32)
    assert difference.max() <= BF16_MAX_PROBABILITY_DIFFERENCE
    assert difference.reshape(2, -1).mean(axis=1).max() <= BF16_MEAN_PROBABILITY_DIFFERENCE


@pytest.mark.slow  # the bundled model on the full-size sample, twice
def test_bf16_masks_agree_with_fp32_at_the_operating_thresholds(bundled_maps):
    checkpoint, fp32, bf16 = bundled_maps
    for channel, lesion in enumerate(LESIONS):
        threshold = checkpoint.raw_thresholds[lesion]  # the maps are raw scores (no calibration passed)
        a, b = fp32[channel] >= threshold, bf16[channel] >= threshold
        assert (a ^ b).sum() <= BF16_MASK_DISAGREEMENT * max((a | b).sum(), 1), lesion


@pytest.mark.skipif(not MASKS.is_dir(), reason="needs ../shared/data/idrid")
@pytest.mark.slow  # the bundled model on the full-size sample, twice
def test_bf16_average_precision_matches_fp32_on_the_ground_truth(bundled_maps):
    _, fp32, bf16 = bundled_maps
    for channel, (lesion, folder) in enumerate([("MA", "1. Microaneurysms"), ("HE", "2. Haemorrhages")]):
        truth = read_mask(MASKS / folder / f"IDRiD_05_{lesion}.tif", fp32.shape[1:]) > 0
        step = 4  # every 4th row: 3 M pixels per map keeps the sort cheap
        scores_fp32, scores_bf16, hits = fp32[channel, ::step].ravel(), bf16[channel, ::step].ravel(), truth[::step].ravel()
        ap_fp32, ap_bf16 = average_precision(scores_fp32, hits), average_precision(scores_bf16, hits)
        assert ap_fp32 > 0.1, lesion  # the test is about a model that finds lesions
        assert abs(ap_bf16 - ap_fp32) <= BF16_AP_DIFFERENCE, (lesion, ap_fp32, ap_bf16)
