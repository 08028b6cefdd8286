import shutil

import numpy as np
import pytest

from tests.training.fake_idrid import REAL_IDRID, make_fake_idrid
from training.data.idrid import (
    DEFAULT_HOLDOUT, IMAGES_DIR, LESION_DIRS, MASKS_DIR, SPLITS, DatasetLayoutError, list_samples, load_sample,
    read_mask, split_holdout,
)

real = pytest.mark.skipif(not (REAL_IDRID / IMAGES_DIR).is_dir(), reason="IDRiD data not in ../shared/data/idrid")


@real
def test_real_training_split_has_54_images_and_idrid_43_has_no_haemorrhage():
    samples = list_samples(REAL_IDRID, "train")
    assert [s.name for s in samples] == [f"IDRiD_{n:02d}" for n in range(1, 55)]
    assert all(s.mask_paths["MA"] is not None for s in samples)
    assert [s.name for s in samples if s.mask_paths["HE"] is None] == ["IDRiD_43"]


@real
def test_real_sample_without_he_mask_loads_all_false():
    sample = next(s for s in list_samples(REAL_IDRID) if s.name == "IDRiD_43")
    image, masks = load_sample(sample)
    assert image.shape == (2848, 4288, 3) and image.dtype == np.uint8
    assert masks.shape == (2, 2848, 4288) and masks.dtype == bool
    assert masks[0].any() and not masks[1].any()


@real
def test_real_masks_are_read_as_nonzero_pixels():
    sample = list_samples(REAL_IDRID)[0]
    mask = read_mask(sample.mask_paths["HE"], (2848, 4288))
    assert 0 < mask.mean() < 0.05


@real
def test_default_holdout_is_every_fifth_image():
    training, held = split_holdout(list_samples(REAL_IDRID))
    assert [s.name for s in held] == list(DEFAULT_HOLDOUT) == [f"IDRiD_{n:02d}" for n in range(5, 55, 5)]
    assert len(training) == 44 and not {s.name for s in training} & set(DEFAULT_HOLDOUT)


def test_unknown_holdout_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="IDRiD_99"):
        split_holdout(list_samples(make_fake_idrid(tmp_path)), ["IDRiD_99"])


def test_wrong_layout_names_the_path(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "IDRiD_01.jpg").write_bytes(b"")
    with pytest.raises(DatasetLayoutError) as error:
        list_samples(tmp_path, "train")
    assert str(tmp_path / IMAGES_DIR / SPLITS["train"]) in str(error.value)


def test_missing_split_names_the_path(tmp_path):
    make_fake_idrid(tmp_path)
    with pytest.raises(DatasetLayoutError, match="b. Testing Set"):
        list_samples(tmp_path, "test")


def test_image_without_ma_mask_is_a_clear_error(tmp_path):
    root = make_fake_idrid(tmp_path)
    (root / MASKS_DIR / SPLITS["train"] / LESION_DIRS["MA"] / "IDRiD_02_MA.tif").unlink()
    with pytest.raises(DatasetLayoutError, match="IDRiD_02.*microaneurysm mask"):
        list_samples(root)


def test_fake_layout_round_trip(tmp_path):
    samples = list_samples(make_fake_idrid(tmp_path))
    assert [s.name for s in samples] == ["IDRiD_01", "IDRiD_02"]
    image, masks = load_sample(samples[1])
    assert image.shape == (96, 144, 3) and masks.shape == (2, 96, 144)
    assert masks[0].any() and not masks[1].any()


def test_mask_of_the_wrong_size_is_an_error(tmp_path):
    root = make_fake_idrid(tmp_path)
    other = make_fake_idrid(tmp_path / "other", size=(50, 60))
    shutil.copy(other / MASKS_DIR / SPLITS["train"] / LESION_DIRS["MA"] / "IDRiD_01_MA.tif",
                root / MASKS_DIR / SPLITS["train"] / LESION_DIRS["MA"] / "IDRiD_01_MA.tif")
    with pytest.raises(DatasetLayoutError, match="IDRiD_01_MA.tif"):
        load_sample(list_samples(root)[0])
