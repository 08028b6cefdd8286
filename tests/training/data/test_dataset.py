import numpy as np
import pytest
import torch

from model.config import RedSegConfig
from model.fov import idrid_fov_diameter, working_mapping
from training.data.cache import CachedSample, WorkingScaleCache, downsample_mask
from training.data.dataset import AugmentConfig, IterationBatchSampler, PatchDataset
from training.data.idrid import list_samples, load_sample

from tests.training.fake_idrid import REAL_IDRID, make_fake_idrid


def _synthetic(n=3, size=(120, 180), seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        image = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        masks = np.zeros((2, *size), bool)
        masks[0, rng.integers(10, size[0] - 10), rng.integers(10, size[1] - 10)] = True  # one MA pixel
        masks[1, 50:60, 100:115] = True
        items.append(CachedSample(f"IDRiD_{i:02d}", image, masks))
    return items


def test_patches_are_a_function_of_seed_and_index():
    data = PatchDataset(_synthetic(), crop_size=48, seed=7)
    again = PatchDataset(_synthetic(), crop_size=48, seed=7)
    for index in (0, 5, 123456):
        a, b = data[index], again[index]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(data[0][0], data[1][0])
    assert not torch.equal(data[0][0], PatchDataset(_synthetic(), crop_size=48, seed=8)[0][0])
    image, masks = data[3]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert masks.shape == (2, 48, 48) and set(masks.unique().tolist()) <= {0.0, 1.0}
    assert 0 <= image.min() and image.max() <= 255


def test_lesion_centred_crops_contain_lesions_of_both_kinds():
    items = _synthetic()
    data = PatchDataset(items, crop_size=40, lesion_share=1.0, augment=AugmentConfig(scale=0.1), seed=0)
    masks = torch.stack([data[i][1] for i in range(60)])
    per_crop = masks.flatten(2).amax(dim=2)  # (60, 2): has MA, has HE
    assert bool((per_crop.amax(dim=1) > 0).all())  # every crop holds a lesion pixel
    assert 10 < int(per_crop[:, 0].sum()) < 50 and 10 < int(per_crop[:, 1].sum()) < 50  # about half each
    random_crops = PatchDataset(items, crop_size=40, lesion_share=0.0, seed=0)
    has_ma = sum(float(random_crops[i][1][0].max()) for i in range(60))
    assert has_ma < 15  # one MA pixel per image is rarely hit by chance


def test_augmentation_keeps_image_and_mask_aligned():
    size = (64, 64)
    image = np.zeros((*size, 3), np.uint8)
    image[10:20, 30:50] = 255
    masks = np.zeros((2, *size), bool)
    masks[0, 10:20, 30:50] = True
    data = PatchDataset([CachedSample("a", image, masks)], crop_size=64, lesion_share=1.0,
                        augment=AugmentConfig(brightness=0, contrast=0, gamma=0, scale=0), seed=1)
    for index in range(12):
        im, m = data[index]
        assert torch.equal(im[0] > 127, m[0] > 0.5)


def test_batch_sampler_splits_iterations_between_ranks():
    single = IterationBatchSampler(3, 5, batch_size=2)
    assert list(single) == [[6, 7], [8, 9]]
    ranks = [list(IterationBatchSampler(0, 2, batch_size=2, rank=r, world_size=2)) for r in range(2)]
    assert ranks == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]


def test_downsample_keeps_every_tiny_lesion():
    mask = np.zeros((300, 450), bool)
    mask[100, 100] = True  # one full-resolution pixel
    mask[200:260, 300:400] = True
    small = downsample_mask(mask, (100, 150))
    assert small[33, 33] or small[33:35, 33:35].any()
    assert small.sum() >= 1 + 18 * 32
    assert small[66:87, 100:133].sum() > 0.9 * small[66:87, 100:133].size


def test_cache_hits_memory_then_disk(tmp_path):
    root = make_fake_idrid(tmp_path / "idrid", size=(120, 180))
    sample = list_samples(root)[0]
    cache = WorkingScaleCache(90, tmp_path / "cache")
    first = cache.get(sample)
    assert cache.hits == {"memory": 0, "disk": 0, "miss": 1}
    assert first.image.shape == (60, 90, 3) and first.masks.shape == (2, 60, 90)
    assert cache.get(sample) is first and cache.hits["memory"] == 1
    fresh = WorkingScaleCache(90, tmp_path / "cache")
    again = fresh.get(sample)
    assert fresh.hits == {"memory": 0, "disk": 1, "miss": 0}
    assert np.array_equal(again.image, first.image) and np.array_equal(again.masks, first.masks)
    other_scale = WorkingScaleCache(60, tmp_path / "cache")
    other_scale.get(sample)
    assert other_scale.hits["miss"] == 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


@pytest.mark.skipif(not REAL_IDRID.is_dir(), reason="needs ../shared/data/idrid")
def test_real_image_cache_keeps_microaneurysms(tmp_path):
    sample = list_samples(REAL_IDRID)[0]
    item = WorkingScaleCache(1440, tmp_path).get(sample)
    assert item.image.shape == (956, 1440, 3)
    assert item.masks[0].any() and item.masks[1].any()


@pytest.mark.skipif(not REAL_IDRID.is_dir(), reason="needs ../shared/data/idrid")
def test_cache_maps_images_and_masks_by_the_fundus_disc_as_inference_does(tmp_path):
    sample = list_samples(REAL_IDRID)[0]
    config = RedSegConfig(fov_diameter=idrid_fov_diameter(1440))
    item = WorkingScaleCache(config, tmp_path).get(sample)
    image, masks = load_sample(sample)
    mapping = working_mapping(image, config)
    assert item.image.shape[:2] == item.masks.shape[1:] == mapping.size
    assert np.array_equal(item.image, mapping.to_working(image))
    assert item.masks[0].any() and item.masks[1].any()
    assert len(list(tmp_path.glob("*.npz"))) == 1
    WorkingScaleCache(1440, tmp_path).get(sample)  # long-side scaling is another cache entry
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_crops_centre_on_all_four_lesions_of_a_four_lesion_sample():
    items = _synthetic()
    for item in items:  # EX and SE where the synthetic images have none of the red lesions
        item.masks.resize((4, *item.masks.shape[1:]), refcheck=False)
        item.masks[2, 10:14, 10:14] = True
        item.masks[3, 100:108, 20:30] = True
    data = PatchDataset(items, crop_size=32, lesion_share=1.0, augment=AugmentConfig(scale=0), seed=0)
    masks = torch.stack([data[i][1] for i in range(120)])
    assert masks.shape[1] == 4
    per_crop = masks.flatten(2).amax(dim=2)
    assert bool((per_crop.amax(dim=1) > 0).all())
    assert all(15 < int(per_crop[:, lesion].sum()) < 60 for lesion in range(4))  # about a quarter each


def test_camera_effects_change_images_but_not_crops_masks_or_other_draws():
    items = _synthetic()
    plain = PatchDataset(items, crop_size=48, seed=3)
    camera = PatchDataset(items, crop_size=48, seed=3, augment=AugmentConfig(blur=2.0, white_balance=0.3, jpeg_quality=30))
    changed = 0
    for index in range(20):
        (image_a, masks_a), (image_b, masks_b) = plain[index], camera[index]
        assert torch.equal(masks_a, masks_b)
        changed += not torch.equal(image_a, image_b)
    assert changed >= 12
