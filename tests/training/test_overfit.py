"""A tiny Red-Seg overfits two real IDRiD crops: the loss falls and the AP on them rises."""

import numpy as np
import pytest
import torch

from model.config import RedSegConfig
from model.network import RedSeg
from training.data.cache import WorkingScaleCache
from training.data.dataset import AugmentConfig, PatchDataset
from training.config import OptimizerConfig
from training.engine import build_optimizer, train_step
from training.data.idrid import list_samples
from training.losses import BalancedBCE, DeepSupervision, FNFPLoss, TopKBalancedBCE, TopKSchedule
from training.evaluation.metrics import PRAccumulator

from tests.training.fake_idrid import REAL_IDRID

NO_AUGMENTATION = AugmentConfig(flips=False, rot90=False, brightness=0.0, contrast=0.0, gamma=0.0, scale=0.0)


def _ap(model, images, masks):
    model.eval()
    with torch.no_grad():
        probs = torch.sigmoid(model(model.normalize(images)).fused).numpy()
    model.train()
    aps = []
    for channel in range(2):
        acc = PRAccumulator()
        acc.update(probs[:, channel], masks[:, channel].numpy() > 0.5)
        aps.append(acc.average_precision())
    return aps


@pytest.mark.slow  # real IDRiD photographs
@pytest.mark.skipif(not REAL_IDRID.is_dir(), reason="needs ../shared/data/idrid")
def test_tiny_network_overfits_two_real_crops(tmp_path):
    torch.manual_seed(0)
    sample = next(s for s in list_samples(REAL_IDRID) if s.name == "IDRiD_03")
    item = WorkingScaleCache(720, tmp_path).get(sample)
    data = PatchDataset([item], crop_size=64, lesion_share=1.0, augment=NO_AUGMENTATION, seed=0)
    crops = [data[i] for i in range(40)]
    # one crop holding microaneurysms, one holding haemorrhage
    ma = next(c for c in crops if c[1][0].sum() >= 2)
    he = next(c for c in crops if c[1][1].sum() >= 20)
    images = torch.stack([ma[0], he[0]])
    masks = torch.stack([ma[1], he[1]])
    model = RedSeg(RedSegConfig(width=0.125, batch_norm=True, working_long_side=720))
    criterion = DeepSupervision(BalancedBCE())
    optimizer = build_optimizer(model, OptimizerConfig(lr=3e-3))
    before = _ap(model, images, masks)
    losses = [train_step(model, criterion, optimizer, images, masks, step, torch.device("cpu"))[0] for step in range(60)]
    after = _ap(model, images, masks)
    print(f"balanced BCE: loss {np.mean(losses[:5]):.3f} -> {np.mean(losses[-5:]):.3f}, AP {before} -> {after}")
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    for lesion, b, a in zip(("MA", "HE"), before, after):
        assert a > max(0.5, 3 * b), f"{lesion}: AP {b:.3f} -> {a:.3f}"
    # then the paper's stage 1 (top-k) and a short low-lr stage 2 (FN+FP) keep what was learnt
    topk = DeepSupervision(TopKBalancedBCE(TopKSchedule(key=10, k_min=200, step=10, length=20)))
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3))
    topk_losses = [train_step(model, topk, optimizer, images, masks, step, torch.device("cpu"))[0] for step in range(20)]
    assert np.mean(topk_losses[-3:]) < np.mean(topk_losses[:3])
    after_topk = _ap(model, images, masks)
    fnfp = DeepSupervision(FNFPLoss())
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-4))
    for step in range(10):
        train_step(model, fnfp, optimizer, images, masks, step, torch.device("cpu"))
    after_fnfp = _ap(model, images, masks)
    print(f"top-k: loss {np.mean(topk_losses[:3]):.3f} -> {np.mean(topk_losses[-3:]):.3f}, AP {after_topk}; FN+FP: AP {after_fnfp}")
    for lesion, a, t, f in zip(("MA", "HE"), after, after_topk, after_fnfp):
        assert t > 0.8 * a and f > 0.8 * t, f"{lesion}: AP {a:.3f} -> top-k {t:.3f} -> FN+FP {f:.3f}"
