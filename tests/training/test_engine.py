"""The training step's options: frozen batch-norm statistics for fine-tuning."""

import pytest
import torch

from model.config import RedSegConfig
from model.network import RedSeg
from training.config import OptimizerConfig
from training.engine import build_optimizer, train_step
from training.losses import DeepSupervision, FNFPLoss


def _running_means(model: RedSeg) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_batch_norm_keeps_its_statistics_while_the_weights_learn(frozen):
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625, batch_norm=True, working_long_side=64))
    before, weights = _running_means(model), [p.detach().clone() for p in model.parameters()]
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    masks = (torch.rand(2, 2, 32, 32) > 0.9).float()
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3))
    train_step(model, DeepSupervision(FNFPLoss()), optimizer, images, masks, 0, torch.device("cpu"),
               precision="fp32", freeze_batch_norm=frozen)
    unchanged = [torch.equal(a, b) for a, b in zip(before, _running_means(model))]
    assert all(unchanged) if frozen else not any(unchanged)
    assert any(not torch.equal(a, b) for a, b in zip(weights, model.parameters()))
