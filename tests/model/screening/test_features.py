"""Screening features, the referral score, its place in the checkpoint, and the per-photograph summary."""

import cv2
import numpy as np
import pytest

from model import load_checkpoint, save_checkpoint
from model.checkpoint import model_digest, update_metadata, write_referral
from model.screening.referral import DISCLAIMER, ReferralScore, ReferralScoreError
from model.checkpoint import FAST_CHECKPOINT
from model.formats.images import read_image
from model.inference import predict_probabilities
from model.screening.masks import lesion_masks
from model.screening.features import (
    FieldOfView, count_lesions, feature_names, gradable_fraction, image_features, lesion_counts, region_stats,
)
from model.screening.summary import CSV_FIELDS, NO_SCORE, OEDEMA_FIELDS, csv_fields, csv_row, one_line, summarise

from tests.model.conftest import SAMPLE_IMAGE, fundus_like, tiny_model

FOV_PIXELS = 1_000_000  # a field of view about 1128 px across: microaneurysms up to about 10 px


def test_microaneurysms_are_small_round_regions_and_haemorrhages_every_region():
    mask = np.zeros((400, 400), np.uint8)
    cv2.circle(mask, (50, 50), 3, 1, -1)  # a microaneurysm
    cv2.circle(mask, (150, 50), 4, 1, -1)  # another one
    cv2.line(mask, (10, 200), (80, 270), 1, 2)  # a vessel fragment: long and thin
    cv2.circle(mask, (300, 300), 30, 1, -1)  # a blot: far too big for a microaneurysm
    cv2.rectangle(mask, (200, 100), (203, 130), 1, -1)  # elongated
    binary = mask.astype(bool)
    ma = count_lesions(binary, "MA", FOV_PIXELS)
    he = count_lesions(binary, "HE", FOV_PIXELS)
    assert ma.count == 2 and he.count == 5
    small = count_lesions(binary[:100, :200], "HE", FOV_PIXELS)
    assert ma.area_pixels == small.area_pixels
    assert he.area_pixels == binary.sum() and he.area_fraction_fov == pytest.approx(binary.sum() / FOV_PIXELS)
    assert count_lesions(np.zeros((5, 5), bool), "MA", FOV_PIXELS).count == 0


def test_gradable_fraction_drops_with_a_dark_half():
    image = fundus_like(400, 600)
    assert gradable_fraction(image) > 0.95
    dark = image.copy()
    left = dark[:, :300]
    left[left[..., 0] > 0] = (40, 6, 2)  # still inside the field of view (red > 20), but too dim to grade
    assert 0.35 < gradable_fraction(dark) < 0.65
    assert gradable_fraction(np.zeros((50, 50, 3), np.uint8)) == 0.0


def test_image_features_names_and_levels():
    probabilities = np.zeros((2, 200, 200), np.float32)
    probabilities[0, 20:24, 20:24] = 0.95  # above 0.5 and 0.9, below the operating threshold 0.97
    probabilities[1, 100:140, 100:140] = 0.6
    fov = FieldOfView(FOV_PIXELS, 1.0, 1.0)
    features = image_features(probabilities, {"MA": 0.97, "HE": 0.5}, fov)
    assert list(features) == feature_names(lesions=("MA", "HE"))
    assert features["MA_count_p50"] == features["MA_count_p90"] == 1 and features["MA_count_op"] == 0
    assert features["HE_count_op"] == 1 and features["HE_count_p90"] == 0
    assert features["HE_area_op"] == pytest.approx(1600 / FOV_PIXELS)
    assert features["HE_soft"] == pytest.approx(0.6 * 1600 / FOV_PIXELS, rel=1e-5)
    assert image_features(probabilities, {"MA": 0.97, "HE": 0.5}, fov, ["HE_count_op"]) == {"HE_count_op": 1.0}
    some = ["MA_count_p90", "HE_area_p50", "MA_soft"]  # counted for the named lesions only, the same figures
    assert image_features(probabilities, {"MA": 0.97, "HE": 0.5}, fov, some) == {name: features[name] for name in some}
    assert list(lesion_counts(probabilities, {"MA": 0.97, "HE": 0.5}, FOV_PIXELS, "p90", {"HE"})) == ["HE"]
    with pytest.raises(ValueError, match="unknown"):
        image_features(probabilities, {"MA": 0.5, "HE": 0.5}, fov, ["HE_colour"])


def score_model(operating_point: float = 0.5) -> ReferralScore:
    return ReferralScore(
        features=["HE_count_op", "MA_count_op"], units=[1.0, 1.0], mean=[1.0, 1.0], scale=[1.0, 1.0],
        coef=[2.0, 1.0], intercept=-1.0, operating_point=operating_point, validation={"roc_auc": 0.9},
    )  # fmt: skip


def test_referral_score_is_monotone_and_round_trips():
    score = score_model()
    low, high = score.score({"HE_count_op": 0, "MA_count_op": 0}), score.score({"HE_count_op": 20, "MA_count_op": 3})
    assert 0 < low < high < 1
    assert ReferralScore.from_dict(score.to_dict()) == score
    with pytest.raises(ReferralScoreError, match="version"):
        ReferralScore.from_dict(score.to_dict() | {"features_version": 0})
    with pytest.raises(ReferralScoreError, match="inconsistent"):
        ReferralScore.from_dict(score.to_dict() | {"coef": [1.0]})


def test_score_lives_in_the_checkpoint_and_older_checkpoints_still_load(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), thresholds={"MA": 0.5, "HE": 0.5})
    digest, image = model_digest(path), fundus_like(90, 120)
    old = load_checkpoint(path)
    assert old.referral is None
    summary = summarise(image, np.zeros((2, 90, 120), np.float32), old)
    assert summary.referral is None and summary.note == NO_SCORE and summary.disclaimer == DISCLAIMER
    assert "no referral score" in one_line(summary) and csv_row("a.png", summary)["referral_score"] == ""

    path.chmod(0o644)
    write_referral(path, score_model(operating_point=0.3).to_dict())
    assert model_digest(path) == digest  # the features cache stays valid
    assert path.stat().st_mode & 0o777 == 0o644
    new = load_checkpoint(path)
    assert ReferralScore.from_dict(new.referral) == score_model(operating_point=0.3)
    for a, b in zip(old.model.state_dict().values(), new.model.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    probabilities = np.zeros((2, 90, 120), np.float32)
    probabilities[1, 40:44, 50:54] = 1.0
    summary = summarise(image, probabilities, new)
    assert summary.lesions["HE"].count == 1 and summary.lesions["MA"].count == 0
    expected = score_model().score({"HE_count_op": 1, "MA_count_op": 0})
    assert summary.referral.score == pytest.approx(expected) and summary.referral.refer == (expected >= 0.3)
    assert csv_row("a.png", summary)["HE_count"] == 1 and "score" in one_line(summary)


def test_a_four_lesion_summary_counts_exudates_and_keeps_a_red_lesion_score(tmp_path):
    model = tiny_model(ex_stages=(3, 4, 5), se_stages=(3, 4, 5))
    path = save_checkpoint(tmp_path / "four.safetensors", model, thresholds={"MA": 0.5, "HE": 0.5, "EX": 0.5, "SE": 0.5})
    write_referral(path, score_model(operating_point=0.3).to_dict())  # fitted on MA and HE features alone
    checkpoint = load_checkpoint(path)
    probabilities = np.zeros((4, 90, 120), np.float32)
    probabilities[1, 40:44, 50:54] = 1.0
    probabilities[2, 20:23, 60:63] = probabilities[2, 60:63, 60:63] = 0.8  # two hard exudates
    image = fundus_like(90, 120)
    for masks in (None, lesion_masks(probabilities, checkpoint.thresholds)):
        summary = summarise(image, probabilities, checkpoint, masks)
        assert list(summary.lesions) == ["MA", "HE", "EX", "SE"]
        assert [found.count for found in summary.lesions.values()] == [0, 1, 2, 0]
        assert summary.referral.score == pytest.approx(score_model().score({"HE_count_op": 1, "MA_count_op": 0}))
    assert one_line(summary).startswith("0 MA, 1 HE, 2 EX and 0 SE lesions, gradable ")
    row = csv_row("a.png", summary)
    assert list(row) == csv_fields(summary.lesions) and row["EX_count"] == 2 and row["EX_area_pixels"] == 18
    assert csv_fields(["MA", "HE"]) == CSV_FIELDS and csv_fields(summary.lesions)[7:13] == [
        "EX_count", "EX_area_pixels", "EX_area_fraction_fov", "SE_count", "SE_area_pixels", "SE_area_fraction_fov"]


def oedema_model(operating_point: float = 0.4) -> ReferralScore:
    return ReferralScore(
        features=["EX_count_op", "HE_count_op"], units=[1.0, 1.0], mean=[0.0, 0.0], scale=[1.0, 1.0],
        coef=[1.5, 0.1], intercept=-1.0, operating_point=operating_point,
        validation={"target": "risk of macular oedema (IDRiD grade > 0)", "roc_auc": 0.95},
    )  # fmt: skip


def test_a_four_lesion_model_states_its_macular_oedema_risk_beside_the_referral_score(tmp_path):
    model = tiny_model(ex_stages=(3, 4, 5), se_stages=(3, 4, 5))
    path = save_checkpoint(tmp_path / "four.safetensors", model, thresholds={"MA": 0.5, "HE": 0.5, "EX": 0.5, "SE": 0.5})
    digest, image = model_digest(path), fundus_like(90, 120)
    probabilities = np.zeros((4, 90, 120), np.float32)
    probabilities[1, 40:44, 50:54] = 1.0
    probabilities[2, 20:23, 60:63] = probabilities[2, 60:63, 60:63] = 0.8  # two hard exudates
    old = summarise(image, probabilities, load_checkpoint(path))  # a checkpoint without the risk score loads
    assert old.macular_oedema is None and "macular oedema" not in one_line(old)
    row = csv_row("a.png", old)
    assert list(row) == csv_fields(old.lesions) and [row[k] for k in OEDEMA_FIELDS] == ["", "", ""]

    write_referral(path, score_model(operating_point=0.3).to_dict(), oedema_model().to_dict())
    assert model_digest(path) == digest  # the features cache and the OpenVINO IR stay valid
    checkpoint = load_checkpoint(path)
    assert ReferralScore.from_dict(checkpoint.macular_oedema) == oedema_model()
    summary = summarise(image, probabilities, checkpoint)
    expected = oedema_model().score({"EX_count_op": 2, "HE_count_op": 1})
    risk = summary.macular_oedema
    assert risk.score == pytest.approx(expected) and expected >= 0.4 and risk.at_risk and risk.operating_point == 0.4
    assert risk.validation["roc_auc"] == 0.95 and "one camera" in risk.validation["cameras"] and risk.validation["independent"] is None
    assert summary.referral.score == pytest.approx(score_model().score({"HE_count_op": 1, "MA_count_op": 0}))
    assert one_line(summary).endswith(f": below the referral point; macular oedema risk {expected:.2f} >= 0.40: at risk")
    row = csv_row("a.png", summary)
    assert list(row) == csv_fields(summary.lesions) and list(row)[-3:] == list(OEDEMA_FIELDS)
    assert [row[k] for k in OEDEMA_FIELDS] == [f"{expected:.4f}", "0.4000", 1]

    write_referral(path, score_model(operating_point=0.3).to_dict(), oedema_model(operating_point=0.9).to_dict())
    below = summarise(image, probabilities, load_checkpoint(path))
    assert not below.macular_oedema.at_risk and one_line(below).endswith(f"risk {expected:.2f} < 0.90: below the risk point")
    assert csv_row("a.png", below)["macular_oedema_at_risk"] == 0

    write_referral(path, score_model(operating_point=0.3).to_dict())  # a refit without a risk score drops the old one
    assert load_checkpoint(path).macular_oedema is None and model_digest(path) == digest


def test_a_red_lesion_model_states_no_macular_oedema_risk(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model(), thresholds={"MA": 0.5, "HE": 0.5})
    update_metadata(path, macular_oedema=ReferralScore(**(oedema_model().to_dict() | {"features": ["HE_count_op"] * 2})).to_dict())
    summary = summarise(fundus_like(90, 120), np.zeros((2, 90, 120), np.float32), load_checkpoint(path))
    assert summary.macular_oedema is None and list(csv_row("a.png", summary)) == CSV_FIELDS


@pytest.mark.parametrize("empty_rows", [False, True])
def test_region_stats_label_the_occupied_rows_only_and_agree_with_a_whole_scan(empty_rows):
    rng = np.random.default_rng(5)
    mask = np.zeros((300, 400), np.uint8)
    mask[60:250, 90:330] = rng.random((190, 240)) > 0.93
    if empty_rows:  # many runs of rows, each labelled on its own
        mask[rng.integers(60, 250, 80)] = 0
    regions = region_stats(mask)
    _, _, whole, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    assert sorted(map(tuple, regions)) == sorted(map(tuple, whole[1:])) and len(regions) > 100
    assert region_stats(np.zeros((4, 4), bool)).shape == (0, 5)


@pytest.fixture(scope="module")
def sample_probabilities():
    checkpoint, image = load_checkpoint(FAST_CHECKPOINT), read_image(SAMPLE_IMAGE)
    return image, predict_probabilities(checkpoint.model, image, calibration=checkpoint.calibration), checkpoint


def test_a_summary_given_the_served_masks_regions_counts_those_masks(sample_probabilities):
    image, probabilities, checkpoint = sample_probabilities
    masks = lesion_masks(probabilities, checkpoint.thresholds)
    shared, recounted = summarise(image, probabilities, checkpoint, masks), summarise(image, probabilities, checkpoint)
    for lesion, stats in masks.stats().items():
        assert shared.lesions[lesion].count <= stats.components
        assert shared.lesions[lesion].count == recounted.lesions[lesion].count > 0
        # the served masks are thresholded on the 16-bit maps: a pixel within 1/131070 of the threshold may differ
        assert abs(shared.lesions[lesion].area_pixels - recounted.lesions[lesion].area_pixels) <= 2
    assert shared.lesions["HE"].area_pixels == masks.stats()["HE"].area_pixels
    assert shared.referral.score == pytest.approx(recounted.referral.score, abs=1e-4)
    assert shared.field_of_view == recounted.field_of_view
