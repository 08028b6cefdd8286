"""Red-Seg's losses: class-balanced BCE (HED, the warm-up), modified Top-k balanced BCE (stage 1),
FN+FP (stage 2), and deep supervision over every side output and the fused output.

Every pixel loss takes logits and a 0/1 target of shape (B, 1, H, W) (one lesion channel) and
the iteration ``step`` within its stage (only the top-k loss uses it), and returns a scalar.

Normalisation. HED weights positives by |Y-|/|Y| and negatives by |Y+|/|Y| and sums; the top-k
loss weights positives by k/(|Y+|+k) and the k kept negatives by |Y+|/(|Y+|+k). Dividing either
by its total weight gives the same gradient direction with a scale that does not depend on how
rare the lesion is: 0.5 * (mean BCE over the positives) + 0.5 * (mean BCE over the counted
negatives). That is what ``reduction="mean"`` (the default) computes, so an MA channel with 30
positive pixels and an HE channel with 30,000 weigh alike. ``reduction="sum"`` keeps the
authors' weighted sums (divided by the pixels per image, so the learning rate does not depend on
the crop size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.config import RED_LESIONS


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape or logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"expected logits and target of the same shape (B, 1, H, W), got {logits.shape} and {target.shape}")


def balanced_weight(target: torch.Tensor) -> torch.Tensor:
    """Per-pixel weights of a 0/1 target that make a weighted sum ½·(mean over positives) + ½·(mean over
    negatives); without positives, ½·(mean over all pixels)."""
    n_total = target.numel()
    n_pos = float(target.sum())
    if n_pos:
        w_pos, w_neg = 0.5 / n_pos, 0.5 / max(n_total - n_pos, 1.0)
    else:
        w_pos, w_neg = 0.0, 0.5 / n_total
    return target * (w_pos - w_neg) + w_neg


def _reduction(reduction: str, allowed: tuple[str, ...] = ("mean", "sum")) -> str:
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {allowed}, got {reduction!r}")
    return reduction


class BalancedBCE(nn.Module):
    """HED's class-balanced BCE, balanced over the whole batch of one lesion channel.

    Without any positive pixel in the batch, the loss is the mean BCE of the negatives
    (weight 1/2, as in the balanced case), so lesion-free batches still teach "no lesion".
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, step: int = 0) -> torch.Tensor:
        _check(logits, target)
        logits, target = logits.float(), (target > 0.5).float()
        if self.reduction == "sum":  # HED's weighted sum, divided by the pixels of the batch
            n_total = target.numel()
            n_pos = float(target.sum())
            w_pos, w_neg = ((n_total - n_pos) / n_total**2, n_pos / n_total**2) if n_pos else (0.0, 0.5 / n_total)
            weight = target * (w_pos - w_neg) + w_neg
        else:
            weight = balanced_weight(target)
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")


@dataclass(frozen=True)
class TopKSchedule:
    """k(r) = max(k_min, ceil(k0 * (1 - floor(r/S) / floor(M/S)))), k0 = max(key * |Y+|, k_min).

    ``r`` counts the iterations of the stage from 0 to M-1: k0 for r in [0, S-1], k0 * (1 - S/M)
    for r in [S, 2S-1], ...: the paper's schedule read with r starting at 0 (so it never reaches
    0 inside the stage), with the floor ``k_min`` on top. ``step <= 0`` switches the decay off.
    """

    key: float = 10.0
    k_min: int = 1000
    step: int = 0
    """S; 0 or less keeps k = k0 for the whole stage."""
    length: int = 1
    """M, the stage's iterations."""

    def factor(self, r: int) -> float:
        if self.step <= 0 or self.length < self.step:
            return 1.0
        return 1.0 - (int(r) // self.step) / (self.length // self.step)

    def k(self, num_positive: int, r: int) -> int:
        k0 = max(self.key * num_positive, self.k_min)
        return max(int(self.k_min), int(math.ceil(k0 * self.factor(r) - 1e-9)))


class TopKBalancedBCE(nn.Module):
    """Stage 1: the modified Top-k balanced BCE, per image.

    All positive pixels count, and of the negatives only the k(r) with the highest predicted
    probability (the hardest); the others get exactly zero gradient. An image without positives
    counts its k_min hardest negatives only (weight 1/2 as in the balanced case), so false
    alarms in lesion-free crops are still pushed down. ``method="exact"`` selects with
    ``torch.topk``; ``method="bins"`` is the authors' O(n) approximation: the negatives'
    probabilities are histogrammed into ``bins`` equal bins and whole bins are taken from the top
    until at least k negatives are selected. The per-image losses are averaged over the batch.
    """

    def __init__(self, schedule: TopKSchedule, method: str = "exact", bins: int = 100, reduction: str = "mean"):
        super().__init__()
        if method not in ("exact", "bins"):
            raise ValueError(f"method must be 'exact' or 'bins', got {method!r}")
        self.schedule = schedule
        self.method = method
        self.bins = int(bins)
        self.reduction = _reduction(reduction)
        self.last_k: list[int] = []

    def forward(self, logits: torch.Tensor, target: torch.Tensor, step: int = 0) -> torch.Tensor:
        _check(logits, target)
        batch = logits.shape[0]
        flat = logits.float().reshape(batch, -1)
        positive = target.reshape(batch, -1) > 0.5
        n_pos = positive.sum(dim=1)
        n_neg_all = positive.shape[1] - n_pos
        pos_list = n_pos.tolist()
        ks = torch.tensor([min(self.schedule.k(p, step), n) for p, n in zip(pos_list, n_neg_all.tolist())], device=flat.device)
        # Positives drop out of the negatives' ranking (-inf sorts last, and softplus(-inf) = 0).
        negatives = flat.masked_fill(positive, float("-inf"))
        if self.method == "exact":
            kmax = int(ks.max()) if batch else 0
            values = torch.topk(negatives, kmax, dim=1, sorted=True).values if kmax else negatives[:, :0]
            keep = torch.arange(kmax, device=flat.device)[None, :] < ks[:, None]
            neg_sum = (F.softplus(values) * keep).sum(dim=1)
            n_neg = ks.to(flat.dtype)
        else:
            keep = torch.stack([self._bin_mask(negatives[i], int(ks[i])) for i in range(batch)])
            neg_sum = (F.softplus(negatives) * keep).sum(dim=1)
            n_neg = keep.sum(dim=1).to(flat.dtype)
        self.last_k = n_neg.long().tolist()
        pos_sum = (F.softplus(-flat) * positive).sum(dim=1)
        n_pos_f = n_pos.to(flat.dtype)
        if self.reduction == "sum":  # the authors' weights, divided by the pixels per image
            total = (n_pos_f + n_neg).clamp(min=1)
            loss = torch.where(n_pos > 0, (n_neg / total) * pos_sum + (n_pos_f / total) * neg_sum, 0.5 * neg_sum)
            loss = loss / flat.shape[1]
        else:
            loss = 0.5 * pos_sum / n_pos_f.clamp(min=1) + 0.5 * neg_sum / n_neg.clamp(min=1)
        return loss.mean()

    def _bin_mask(self, negatives: torch.Tensor, k: int) -> torch.Tensor:
        """The authors' O(n) selection: whole probability bins from the top until >= k negatives."""
        with torch.no_grad():
            valid = torch.isfinite(negatives)
            probs = torch.sigmoid(negatives.detach())
            index = (probs * self.bins).long().clamp_(max=self.bins - 1)
            counts = torch.bincount(index[valid], minlength=self.bins)
            from_top = torch.cumsum(counts.flip(0), 0).flip(0)  # negatives in bins >= b
            enough = torch.nonzero(from_top >= k)
            lowest = int(enough.max()) if len(enough) else 0
            return valid & (index >= lowest) if k > 0 else torch.zeros_like(valid)


class FNFPLoss(nn.Module):
    """Stage 2: FN + FP = sum y(1-p)^2 + sum (1-y)p^2 = sum (y - p)^2, p = sigmoid(logits).

    ``reduction="sum"`` is the paper's sum over all pixels of the batch; ``"mean"`` divides it by
    the number of pixels; ``"balanced"`` weighs the two terms as the balanced BCE weighs its
    classes (``balanced_weight``): 1/2 FN / |Y+| + 1/2 FP / |Y-| over the batch (1/2 FP / |Y| without
    positives), so a lesion covering 1 % of a crop is not drowned by its background.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _reduction(reduction, ("mean", "sum", "balanced"))

    def forward(self, logits: torch.Tensor, target: torch.Tensor, step: int = 0) -> torch.Tensor:
        _check(logits, target)
        squared = (target.float() - torch.sigmoid(logits.float())).square()
        if self.reduction == "balanced":
            return (squared * balanced_weight((target > 0.5).float())).sum()
        return squared.sum() if self.reduction == "sum" else squared.mean()


class DeepSupervision(nn.Module):
    """The pixel loss on every side output and on the fused output of both branches.

    total = sum over lesions of lesion_weight * (fused_weight * L(fused) + sum_i side_weights[i] * L(side_i)).
    ``side_weights`` is one weight for every side output or a list per branch tap. ``forward``
    returns the total and its parts (for logging) as floats.
    """

    def __init__(
        self,
        loss: nn.Module,
        side_weights: float | list[float] = 1.0,
        fused_weight: float = 1.0,
        lesion_weights: dict[str, float] | None = None,
        lesions: tuple[str, ...] = RED_LESIONS,
    ):
        super().__init__()
        self.loss = loss
        self.side_weights = side_weights
        self.fused_weight = float(fused_weight)
        self.lesions = tuple(lesions)
        """The output's channels, in order."""
        self.lesion_weights = {lesion: 1.0 for lesion in self.lesions} | dict(lesion_weights or {})

    def side_weight(self, index: int, count: int) -> float:
        if isinstance(self.side_weights, (int, float)):
            return float(self.side_weights)
        if len(self.side_weights) != count:
            raise ValueError(f"side_weights has {len(self.side_weights)} entries for {count} side outputs")
        return float(self.side_weights[index])

    def forward(self, output, target: torch.Tensor, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=target.device)
        parts: dict[str, float] = {}
        for channel, lesion in enumerate(self.lesions):
            lesion_target = target[:, channel : channel + 1]
            lesion_total = torch.zeros((), device=target.device)
            if self.fused_weight:
                fused = self.loss(output.fused[:, channel : channel + 1], lesion_target, step)
                parts[f"{lesion}/fused"] = float(fused.detach())
                lesion_total = lesion_total + self.fused_weight * fused
            sides = output.sides[lesion]
            for index, side in enumerate(sides):
                weight = self.side_weight(index, len(sides))
                if weight:
                    value = self.loss(side, lesion_target, step)
                    parts[f"{lesion}/side{index + 1}"] = float(value.detach())
                    lesion_total = lesion_total + weight * value
            total = total + self.lesion_weights[lesion] * lesion_total
        return total, parts


def build_loss(name: str, options: dict | None, stage_length: int) -> nn.Module:
    """The pixel loss of a stage from its config: balanced_bce | topk | fnfp (options: see README)."""
    options = dict(options or {})
    if name == "balanced_bce":
        loss = BalancedBCE(reduction=options.pop("reduction", "mean"))
    elif name == "topk":
        schedule = TopKSchedule(
            key=float(options.pop("key", 10.0)),
            k_min=int(options.pop("k_min", 1000)),
            step=int(options.pop("step", 0)),
            length=int(options.pop("length", stage_length)),
        )
        loss = TopKBalancedBCE(
            schedule,
            method=options.pop("method", "exact"),
            bins=int(options.pop("bins", 100)),
            reduction=options.pop("reduction", "mean"),
        )
    elif name == "fnfp":
        loss = FNFPLoss(reduction=options.pop("reduction", "mean"))
    else:
        raise ValueError(f"unknown loss {name!r}: expected balanced_bce, topk or fnfp")
    if options:
        raise ValueError(f"unknown options for loss {name!r}: {sorted(options)}")
    return loss
