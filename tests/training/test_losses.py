import math

import pytest
import torch

from model.config import RedSegConfig
from model.network import RedSeg
from training.losses import BalancedBCE, DeepSupervision, FNFPLoss, TopKBalancedBCE, TopKSchedule, build_loss


def _pair(seed=0, shape=(2, 1, 16, 16), share=0.05):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g)
    target = (torch.rand(shape, generator=g) < share).float()
    return logits, target


def test_topk_schedule_steps_and_floor():
    s = TopKSchedule(key=10, k_min=100, step=25, length=100)
    assert [s.factor(r) for r in (0, 24, 25, 49, 50, 75, 99)] == [1, 1, 0.75, 0.75, 0.5, 0.25, 0.25]
    assert s.k(num_positive=40, r=0) == 400
    assert s.k(40, 30) == 300
    assert s.k(40, 99) == 100  # 400 * 0.25
    assert s.k(5, 0) == 100  # k0 = max(key * |Y+|, k_min)
    assert s.k(20, 99) == 100  # 200 * 0.25 = 50 -> floor k_min
    assert s.k(0, 50) == 100  # no positives: k_min
    assert TopKSchedule(key=10, k_min=1, step=0, length=100).k(7, 99) == 70  # step 0: no decay


@pytest.mark.parametrize("method", ["exact", "bins"])
def test_topk_gradient_only_on_positives_and_hardest_negatives(method):
    logits, target = _pair(shape=(2, 1, 20, 20))
    logits.requires_grad_(True)
    loss_fn = TopKBalancedBCE(TopKSchedule(key=2, k_min=10, step=0, length=1), method=method, bins=1000)
    loss = loss_fn(logits, target)
    loss.backward()
    grad = logits.grad
    for b in range(2):
        pos = target[b, 0] > 0.5
        neg_logits = logits[b, 0][~pos].detach()
        neg_grad = grad[b, 0][~pos]
        k = loss_fn.last_k[b]
        assert k >= 2 * int(pos.sum())
        chosen = neg_grad != 0
        assert int(chosen.sum()) == k
        # the chosen negatives are exactly the k with the highest logits
        assert neg_logits[chosen].min() >= neg_logits[~chosen].max()
        assert (grad[b, 0][pos] < 0).all()  # positives pushed up
    if method == "exact":
        assert loss_fn.last_k == [max(2 * int(target[b].sum()), 10) for b in range(2)]


def test_topk_loss_value_matches_formula():
    logits, target = _pair(seed=3, shape=(1, 1, 12, 12), share=0.1)
    loss_fn = TopKBalancedBCE(TopKSchedule(key=3, k_min=5, step=0, length=1))
    pos = target.flatten() > 0.5
    p = torch.sigmoid(logits.flatten())
    n_pos = int(pos.sum())
    k = max(3 * n_pos, 5)
    neg_loss = torch.sort(-torch.log(1 - p[~pos]), descending=True).values[:k]
    expected = 0.5 * (-torch.log(p[pos])).mean() + 0.5 * neg_loss.mean()
    assert torch.allclose(loss_fn(logits, target), expected, atol=1e-5)
    # 'sum' is the authors' weighting: positives by k/(n+ + k), negatives by n+/(n+ + k), per pixel
    total = n_pos + k
    authors = (k / total) * (-torch.log(p[pos])).sum() + (n_pos / total) * neg_loss.sum()
    summed = TopKBalancedBCE(TopKSchedule(key=3, k_min=5), reduction="sum")(logits, target)
    assert torch.allclose(summed, authors / 144, atol=1e-6)


def test_topk_image_without_positives_counts_k_min_hardest_negatives():
    logits = torch.randn(1, 1, 10, 10, requires_grad=True)
    target = torch.zeros(1, 1, 10, 10)
    loss_fn = TopKBalancedBCE(TopKSchedule(key=10, k_min=7, step=0, length=1))
    loss = loss_fn(logits, target)
    loss.backward()
    assert loss_fn.last_k == [7]
    assert int((logits.grad != 0).sum()) == 7
    top = torch.topk(logits.detach().flatten(), 7).values
    assert torch.allclose(loss, 0.5 * torch.nn.functional.softplus(top).mean())
    assert (logits.grad[logits.grad != 0] > 0).all()  # pushed down


def test_topk_decays_k_over_the_stage():
    logits, target = _pair(seed=1, shape=(1, 1, 32, 32), share=0.01)
    loss_fn = TopKBalancedBCE(TopKSchedule(key=20, k_min=8, step=10, length=40))
    n_pos = int(target.sum())
    ks = []
    for r in (0, 10, 20, 30):
        loss_fn(logits, target, step=r)
        ks.append(loss_fn.last_k[0])
    k0 = max(20 * n_pos, 8)
    assert ks == [max(8, math.ceil(k0 * f - 1e-9)) for f in (1, 0.75, 0.5, 0.25)]


def test_fnfp_is_sum_of_squared_errors():
    logits, target = _pair(seed=2, shape=(3, 1, 9, 7))
    p = torch.sigmoid(logits)
    fn = (target * (1 - p) ** 2).sum()
    fp = ((1 - target) * p**2).sum()
    assert torch.allclose(FNFPLoss("sum")(logits, target), fn + fp)
    assert torch.allclose(FNFPLoss("sum")(logits, target), ((target - p) ** 2).sum())
    assert torch.allclose(FNFPLoss("mean")(logits, target), ((target - p) ** 2).mean())


def test_balanced_fnfp_is_half_fn_per_positive_plus_half_fp_per_negative():
    logits, target = _pair(seed=3, shape=(2, 1, 8, 8), share=0.1)
    pos = target > 0.5
    p = torch.sigmoid(logits)
    expected = 0.5 * ((1 - p[pos]) ** 2).mean() + 0.5 * (p[~pos] ** 2).mean()
    assert torch.allclose(FNFPLoss("balanced")(logits, target), expected, atol=1e-6)
    empty = torch.zeros_like(target)
    assert torch.allclose(FNFPLoss("balanced")(logits, empty), 0.5 * (p**2).mean(), atol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        FNFPLoss("weighted")


def test_balanced_bce_is_half_positive_mean_plus_half_negative_mean():
    logits, target = _pair(seed=4, shape=(2, 1, 8, 8), share=0.2)
    pos = target > 0.5
    p = torch.sigmoid(logits)
    expected = 0.5 * (-torch.log(p[pos])).mean() + 0.5 * (-torch.log(1 - p[~pos])).mean()
    assert torch.allclose(BalancedBCE()(logits, target), expected, atol=1e-5)
    n, n_pos = target.numel(), int(pos.sum())
    hed = ((n - n_pos) / n * (-torch.log(p[pos])).sum() + n_pos / n * (-torch.log(1 - p[~pos])).sum()) / n
    assert torch.allclose(BalancedBCE("sum")(logits, target), hed, atol=1e-6)
    empty = torch.zeros_like(target)
    assert torch.allclose(BalancedBCE()(logits, empty), 0.5 * (-torch.log(1 - p)).mean(), atol=1e-6)


def test_deep_supervision_weights_every_output():
    torch.manual_seed(0)
    model = RedSeg(RedSegConfig(width=0.0625))
    x = torch.randn(2, 3, 32, 32)
    target = (torch.rand(2, 2, 32, 32) < 0.1).float()
    output = model(x)
    base = FNFPLoss("mean")
    criterion = DeepSupervision(base, side_weights=[0.5, 1.0, 2.0], fused_weight=3.0, lesion_weights={"MA": 2.0, "HE": 1.0})
    total, parts = criterion(output, target)
    expected = 0.0
    for c, lesion in enumerate(("MA", "HE")):
        t = target[:, c : c + 1]
        inner = 3.0 * base(output.fused[:, c : c + 1], t)
        inner = inner + sum(w * base(s, t) for w, s in zip([0.5, 1.0, 2.0], output.sides[lesion]))
        expected = expected + (2.0 if lesion == "MA" else 1.0) * inner
    assert torch.allclose(total, expected)
    assert set(parts) == {f"{l}/{n}" for l in ("MA", "HE") for n in ("fused", "side1", "side2", "side3")}
    total.backward()
    for branch in model.branches.values():
        for conv in branch.side_convs:
            assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def _attribute(loss, option):
    return getattr(loss.schedule, option) if option in ("key", "k_min", "step", "length") else getattr(loss, option)


# Every option the README documents, with a value other than its default.
LOSS_OPTIONS = [
    ("balanced_bce", BalancedBCE, "reduction", "sum"),
    ("topk", TopKBalancedBCE, "key", 3.0),
    ("topk", TopKBalancedBCE, "k_min", 7),
    ("topk", TopKBalancedBCE, "step", 10),
    ("topk", TopKBalancedBCE, "length", 40),
    ("topk", TopKBalancedBCE, "method", "bins"),
    ("topk", TopKBalancedBCE, "bins", 50),
    ("topk", TopKBalancedBCE, "reduction", "sum"),
    ("fnfp", FNFPLoss, "reduction", "sum"),
]


@pytest.mark.parametrize("name, cls, option, value", LOSS_OPTIONS)
def test_build_loss_takes_every_documented_option(name, cls, option, value):
    loss = build_loss(name, {option: value}, 100)
    assert type(loss) is cls
    assert _attribute(loss, option) == value
    logits, target = _pair(seed=5)
    assert torch.isfinite(loss(logits, target, step=20))


@pytest.mark.parametrize("name", ["balanced_bce", "topk", "fnfp"])
def test_build_loss_defaults_and_bad_options(name):
    assert build_loss(name, None, 100).reduction == "mean"
    with pytest.raises(ValueError, match="unknown options"):
        build_loss(name, {"kee": 5}, 100)
    with pytest.raises(ValueError, match="reduction"):
        build_loss(name, {"reduction": "max"}, 100)


def test_build_loss_topk_length_defaults_to_the_stage_and_rejects_unknown_names():
    assert build_loss("topk", {"key": 5, "step": 10}, 100).schedule.length == 100
    with pytest.raises(ValueError, match="method"):
        build_loss("topk", {"method": "sort"}, 100)
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("dice", {}, 100)
