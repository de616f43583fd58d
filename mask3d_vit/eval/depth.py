"""Monocular depth metrics (Eigen et al. 2014 protocol), on valid pixels only, reducible across processes.

Per image, over pixels whose ground truth is valid and inside ``(min_depth, max_depth)``, with predictions clamped
to that range (the BTS / AdaBins convention); then averaged over images:

- ``abs_rel``: mean ``|pred - gt| / gt``;   ``rmse``: ``sqrt(mean((pred - gt)^2))`` in metres;
- ``log10``: mean ``|log10 pred - log10 gt|``;
- ``delta1/2/3``: percent of pixels with ``max(pred / gt, gt / pred) < 1.25 ** k``.

The same metrics after per-image median scaling (``pred * median(gt) / median(pred)``: scale-free, the score that
matters for a relative-depth probe) are reported with a ``_med`` suffix.

Example::

    meter = DepthMeter(max_depth=10.0)
    meter.update(pred, batch["depth"], batch["valid"])     # (B, 1, H, W) each
    meter.all_reduce()
    meter.compute()   # {"abs_rel": ..., "rmse": ..., ..., "delta3_med": ..., "images": ...}
"""
from __future__ import annotations

import torch

from ..engine.distributed import all_reduce_sum

DEPTH_METRICS = ("abs_rel", "rmse", "log10", "delta1", "delta2", "delta3")


def depth_errors(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image metrics over the pixels in ``mask``.

    Args:
        pred: ``(B, ...)`` predicted depth in metres, > 0 where ``mask``.
        gt: ``(B, ...)`` true depth in metres, > 0 where ``mask``.
        mask: ``(B, ...)`` bool, the pixels to score.

    Returns:
        float64 ``(B, 6)`` in :data:`DEPTH_METRICS` order; NaN rows for images without a pixel in ``mask``.
    """
    if not pred.shape == gt.shape == mask.shape:
        raise ValueError(f"shapes differ: pred {tuple(pred.shape)}, gt {tuple(gt.shape)}, mask {tuple(mask.shape)}")
    b = pred.shape[0]
    m = mask.reshape(b, -1)
    # Masked pixels get harmless stand-ins (1 m) so logs and ratios stay finite; they are zeroed below.
    p = torch.where(m, pred.reshape(b, -1).double(), 1.0)
    g = torch.where(m, gt.reshape(b, -1).double(), 1.0)
    n = m.sum(1).double()
    ratio = torch.maximum(p / g, g / p)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(m, x, 0.0).sum(1) / n

    rows = [mean((p - g).abs() / g), mean((p - g) ** 2).sqrt(), mean((p.log10() - g.log10()).abs())]
    rows += [mean((ratio < 1.25 ** k).double()) * 100 for k in (1, 2, 3)]
    return torch.stack(rows, dim=1)


def median_scale(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``pred`` multiplied per image by ``median(gt) / median(pred)`` over ``mask`` (unchanged where empty)."""
    scales = []
    for p, g, m in zip(pred, gt, mask):
        scales.append(g[m].median() / p[m].median() if m.any() else pred.new_ones(()))
    return pred * torch.stack(scales).view(-1, *[1] * (pred.ndim - 1))


class DepthMeter:
    """Sums per-image depth metrics (raw and median-scaled) over batches and processes.

    Args:
        min_depth: ground truth at or below this is not scored; predictions are clamped up to it.
        max_depth: ground truth at or beyond this is not scored; predictions are clamped down to it.
        device: where the sums live (this rank's GPU under NCCL).
    """

    def __init__(self, *, min_depth: float = 1e-3, max_depth: float = 10.0, device: torch.device | str = "cpu"):
        if not 0 < min_depth < max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")
        self.min_depth, self.max_depth = min_depth, max_depth
        # [raw metrics (6), median-scaled metrics (6), number of scored images]
        self.sums = torch.zeros(2 * len(DEPTH_METRICS) + 1, dtype=torch.float64, device=device)

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
        """``pred``, ``gt``: ``(B, 1, H, W)`` metres; ``valid``: ``(B, 1, H, W)`` bool (the batch's ``valid``)."""
        mask = valid & (gt > self.min_depth) & (gt < self.max_depth)
        pred = pred.float().clamp(self.min_depth, self.max_depth)
        raw = depth_errors(pred, gt, mask)
        med = depth_errors(median_scale(pred, gt, mask).clamp(self.min_depth, self.max_depth), gt, mask)
        scored = mask.flatten(1).any(1)
        row = torch.cat([raw[scored].sum(0), med[scored].sum(0), scored.sum().double().view(1)])
        self.sums += row.to(self.sums.device)

    def all_reduce(self) -> None:
        """Sum over processes; call once on every rank before :meth:`compute`."""
        all_reduce_sum(self.sums)

    def compute(self) -> dict[str, float]:
        """Image-averaged metrics (NaN when no image had a valid pixel) and ``images``, the count scored."""
        k = len(DEPTH_METRICS)
        count = self.sums[-1].item()
        means = (self.sums[:-1] / count).tolist() if count else [float("nan")] * (2 * k)
        out = dict(zip(DEPTH_METRICS, means[:k]))
        out.update({f"{name}_med": v for name, v in zip(DEPTH_METRICS, means[k:])})
        out["images"] = count
        return out
