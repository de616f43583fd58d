"""Evaluation of dense predictions (a class id or a depth per pixel) on a held-out dataset.

:class:`DenseEvaluator` runs the model; what it measures is a *score* the task hands it:
:class:`SegmentationScore` (confusion matrix: mIoU, per-class IoU and a per-class table) or :class:`DepthScore`
(AbsRel, RMSE, deltas, raw and median-scaled). A score has ``meter(device)`` (a fresh accumulator with
``all_reduce()`` and ``compute()``), ``update(meter, pred, batch)`` and ``summary(metrics) -> (flat metrics,
markdown table or "")``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.sample import DEPTH, LABEL, RGB, VALID
from ..engine import distributed as D
from ..io import write_json, write_text
from .depth import DepthMeter
from .segmentation import SegmentationMeter, format_class_table


@dataclass
class EvalConfig:
    """How a fine-tuned model is evaluated."""
    split: str = "val"
    batch_size: int = 8          # per process
    window: int = 0              # sliding-window side in pixels; 0 = whole images
    window_stride: int = 0       # 0 = 2/3 of the window
    max_images: int = 0          # 0 = the whole split (a cap keeps periodic evaluation cheap)
    min_depth: float = 1e-3      # depth: scored ground-truth range is (min_depth, data.max_depth)


class SegmentationScore:
    """Semantic segmentation: predicted ``(B, H, W)`` class ids against the batch's ``label``.

    Args:
        class_names: the class set's names, "unlabeled" (id 0, never scored) first.
    """

    def __init__(self, class_names: tuple[str, ...]):
        self.class_names = tuple(class_names)

    def meter(self, device: torch.device) -> SegmentationMeter:
        return SegmentationMeter(len(self.class_names) - 1, device=device)

    def update(self, meter: SegmentationMeter, pred: torch.Tensor, batch: dict) -> None:
        meter.update(pred, batch[LABEL].to(meter.conf.device))

    def summary(self, metrics: dict) -> tuple[dict[str, float], str]:
        flat = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        # Per-class IoUs are logged too; classes absent from both labels and predictions have none.
        flat.update({f"iou/{name}": v for name, v in zip(self.class_names[1:], metrics["iou"]) if v == v})
        return flat, format_class_table(metrics, class_names=self.class_names)


class DepthScore:
    """Depth estimation: predicted ``(B, 1, H, W)`` metres against the batch's ``depth`` where ``valid``.

    Args:
        min_depth: ground truth at or below this is not scored.
        max_depth: ground truth at or beyond this is not scored (the data's ``max_depth``).
    """

    def __init__(self, *, min_depth: float, max_depth: float):
        self.min_depth, self.max_depth = min_depth, max_depth

    def meter(self, device: torch.device) -> DepthMeter:
        return DepthMeter(min_depth=self.min_depth, max_depth=self.max_depth, device=device)

    def update(self, meter: DepthMeter, pred: torch.Tensor, batch: dict) -> None:
        device = meter.sums.device
        meter.update(pred, batch[DEPTH].to(device), batch[VALID].to(device))

    def summary(self, metrics: dict) -> tuple[dict[str, float], str]:
        return dict(metrics), ""


class DenseEvaluator:
    """``evaluator(model) -> metrics``: a dense model's score on a held-out dataset, reduced over ranks.

    Each rank scores every ``world_size``-th image; the meters sum their counts across ranks, so the result is exact
    for any number of processes. Rank 0 writes ``eval_<split>.json`` (and the score's table as ``eval_<split>.md``,
    also kept as :attr:`table`) into ``out_dir``.

    Args:
        dataset: map-style dataset of samples holding what ``score`` compares against.
        score: :class:`SegmentationScore` or :class:`DepthScore`.
        task: the task's name, written into the report.
        cfg: evaluation settings.
        device: this rank's device.
        out_dir: where rank 0 writes the reports; None = nowhere.
    """

    def __init__(self, dataset, *, score, task: str, cfg: EvalConfig, device: torch.device | str,
                 out_dir: str | Path | None = None):
        n = min(len(dataset), cfg.max_images) if cfg.max_images else len(dataset)
        self.indices = list(range(D.get_rank(), n, D.get_world_size()))
        self.dataset, self.score, self.task, self.cfg = dataset, score, task, cfg
        self.device = torch.device(device)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.table = ""

    def __call__(self, model) -> dict[str, float]:
        meter = self.score.meter(self.device)
        for start in range(0, len(self.indices), self.cfg.batch_size):
            batch = torch.utils.data.default_collate(
                [self.dataset[i] for i in self.indices[start:start + self.cfg.batch_size]])
            pred = model.predict(batch[RGB].to(self.device), window=self.cfg.window,
                                 stride=self.cfg.window_stride or None)
            self.score.update(meter, pred, batch)
        meter.all_reduce()
        metrics = meter.compute()
        flat, self.table = self.score.summary(metrics)
        if D.is_main() and self.out_dir is not None:
            name = f"eval_{self.cfg.split}"
            write_json(self.out_dir / f"{name}.json", {"task": self.task, "split": self.cfg.split, **metrics})
            if self.table:
                write_text(self.out_dir / f"{name}.md", self.table)
        return flat
