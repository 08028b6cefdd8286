"""The macula: the fovea found on constructed photographs, and the hard exudates counted near it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.screening.features import MACULA_FEATURES, feature_names, image_features, field_of_view
from model.screening.macula import DISC_DIAMETER, Macula, exudates_near_macula, find_macula


def fundus_with_fovea(fovea: tuple[int, int], size: tuple[int, int] = (600, 900)) -> np.ndarray:
    """An orange disc of the field of view with a soft dark spot (the fovea) and a bright optic disc."""
    height, width = size
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, (width // 2, height // 2), 280, (190, 90, 30), -1)
    cv2.circle(image, (width // 2 + 200, height // 2), 35, (250, 220, 160), -1)
    spot = np.zeros((height, width), np.float32)
    spot[fovea[1], fovea[0]] = 1.0
    spot = cv2.GaussianBlur(spot, (0, 0), 25)
    darkening = 1 - 0.5 * spot / spot.max()
    return (image * darkening[..., None]).astype(np.uint8)


@pytest.mark.parametrize("fovea", [(450, 300), (400, 330), (500, 260)])
def test_the_fovea_is_the_dark_spot_near_the_centre(fovea):
    macula = find_macula(fundus_with_fovea(fovea))
    assert abs(macula.x - fovea[0]) <= 4 and abs(macula.y - fovea[1]) <= 4
    assert macula.radius == pytest.approx(DISC_DIAMETER * 560, rel=0.05)


def test_exudates_near_the_macula_by_hand():
    macula = Macula(50.0, 50.0, 10.0)
    mask = np.zeros((100, 100), bool)
    mask[48:52, 48:52] = True  # inside: 16 pixels
    mask[58:70, 50] = True  # reaches in from outside (y 58..60 inside)
    mask[90:95, 90:95] = True  # far away
    count, share = exudates_near_macula(mask, macula)
    zone = macula.mask(mask.shape)
    assert count == 2
    assert share == pytest.approx((16 + 3) / zone.sum())


def test_exudates_near_the_macula_agree_with_labelling_the_whole_mask():
    rng = np.random.default_rng(3)
    for _ in range(40):
        mask = rng.random((120, 160)) > rng.choice([0.7, 0.97, 0.995])
        mask[rng.integers(0, 120, 40)] = False
        macula = Macula(*rng.uniform(-20, 180, 2), rng.uniform(0, 50))
        zone = macula.mask(mask.shape)
        labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[1]
        touching = len(np.unique(labels[mask & zone])) if (mask & zone).any() else 0
        assert exudates_near_macula(mask, macula) == (touching, (mask & zone).sum() / max(zone.sum(), 1))


def test_macula_features_come_with_hard_exudates_only():
    assert set(MACULA_FEATURES) <= set(feature_names(lesions=("MA", "HE", "EX")))
    assert not set(MACULA_FEATURES) & set(feature_names(lesions=("MA", "HE")))
    image = fundus_with_fovea((450, 300))
    probabilities = np.zeros((3, *image.shape[:2]), np.float32)
    probabilities[2, 295:305, 445:455] = 0.9
    thresholds = {"MA": 0.5, "HE": 0.5, "EX": 0.5}
    features = image_features(probabilities, thresholds, field_of_view(image), list(MACULA_FEATURES), image=image)
    assert features["EX_count_macula"] == 1.0 and features["EX_area_macula"] > 0
    with pytest.raises(ValueError, match="need the photograph"):
        image_features(probabilities, thresholds, field_of_view(image), list(MACULA_FEATURES))
