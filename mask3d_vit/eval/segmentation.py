"""Semantic-segmentation metrics from a confusion matrix, reducible across processes.

Label id 0 is "unlabeled" in every class set and is ignored: those pixels enter no count. Classes are ids
``1..K``; the confusion matrix is ``(K, K)`` with rows = ground truth and columns = prediction (row/column ``i`` is
class id ``i + 1``). Metrics are reported in percent, as papers (and mmseg) do:

- ``miou``: mean over classes of ``TP / (TP + FP + FN)``, over classes that occur in the ground truth or the
  predictions (a class absent from both has no defined IoU and is left out, as in mmseg);
- ``macc``: mean over classes present in the ground truth of ``TP / (TP + FN)``;
- ``pixel_acc``: correct / labelled pixels.

Example::

    meter = SegmentationMeter(num_classes=13)
    meter.update(pred, label)            # per batch, both (B, H, W) class ids
    meter.all_reduce()                   # sums over ranks (a no-op in one process)
    metrics = meter.compute()            # {"miou": ..., "macc": ..., "pixel_acc": ..., "iou": [...], "acc": [...]}
    print(format_class_table(metrics, class_names=get_class_set("nyu13").names))
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..data.sample import IGNORE_LABEL
from ..engine.distributed import all_reduce_sum


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Count (true class, predicted class) pairs over labelled pixels.

    Args:
        pred: integer class ids in ``1..num_classes``, any shape.
        target: integer class ids in ``0..num_classes`` (0 = ignored), same shape as ``pred``.
        num_classes: K, the number of real classes.

    Returns:
        int64 ``(K, K)``: ``[i, j]`` = pixels of class ``i + 1`` predicted as class ``j + 1``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
    keep = target != IGNORE_LABEL
    t, p = target[keep].long() - 1, pred[keep].long() - 1
    for name, ids in (("label", t), ("prediction", p)):
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
            raise ValueError(f"{name} ids must lie in 1..{num_classes} on labelled pixels; found "
                             f"{int(ids.min()) + 1}..{int(ids.max()) + 1} (does the class set match the data?)")
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).view(num_classes, num_classes)


def segmentation_metrics(conf: torch.Tensor) -> dict:
    """Metrics (percent) from a ``(K, K)`` confusion matrix; undefined per-class values are NaN.

    Returns:
        ``miou``, ``macc``, ``pixel_acc`` (floats) and ``iou``, ``acc`` (lists of K floats, class ids 1..K).
    """
    conf = conf.double()
    tp = conf.diagonal()
    gt, predicted = conf.sum(1), conf.sum(0)
    union = gt + predicted - tp
    nan = torch.full_like(tp, math.nan)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan) * 100
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan) * 100
    total = conf.sum()
    return {
        "miou": float(iou.nanmean()) if union.any() else math.nan,
        "macc": float(acc.nanmean()) if gt.any() else math.nan,
        "pixel_acc": float(tp.sum() / total * 100) if total > 0 else math.nan,
        "iou": iou.tolist(),
        "acc": acc.tolist(),
    }


class SegmentationMeter:
    """Accumulates a confusion matrix over batches (and processes).

    Args:
        num_classes: K, the number of real classes (ids 1..K).
        device: where the matrix lives; under NCCL it must be this rank's GPU so that it can be all-reduced.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``, ``target``: ``(B, H, W)`` class ids (target 0 = ignored)."""
        self.conf += confusion_matrix(pred, target, self.num_classes).to(self.conf.device)

    def all_reduce(self) -> None:
        """Sum the matrix over processes; call once on every rank before :meth:`compute`."""
        all_reduce_sum(self.conf)

    def compute(self) -> dict:
        return segmentation_metrics(self.conf)


def format_class_table(metrics: dict, *, class_names: Sequence[str]) -> str:
    """A markdown table of per-class IoU and accuracy, then the means.

    Args:
        metrics: output of :func:`segmentation_metrics`.
        class_names: the class set's names including ``"unlabeled"`` at index 0.
    """
    if len(class_names) != len(metrics["iou"]) + 1:
        raise ValueError(f"{len(class_names)} class names (with 'unlabeled') for {len(metrics['iou'])} classes")

    def pct(x: float) -> str:
        return "-" if math.isnan(x) else f"{x:.1f}"

    lines = ["| class | IoU | Acc |", "|---|---:|---:|"]
    lines += [f"| {name} | {pct(i)} | {pct(a)} |" for name, i, a in zip(class_names[1:], metrics["iou"],
                                                                         metrics["acc"])]
    lines.append(f"| **mean** | **{pct(metrics['miou'])}** | **{pct(metrics['macc'])}** |")
    lines.append(f"\npixel accuracy: {pct(metrics['pixel_acc'])}")
    return "\n".join(lines) + "\n"
