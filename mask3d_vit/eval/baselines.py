"""Floors: predictors that never look at the image, fit on training frames and scored on validation frames.

A probe or a fine-tuned model means something only where it beats these. Two per task:

- **constant**: one value for every pixel of every frame. Depth: ``exp(mean log depth)`` over the valid training
  pixels (the geometric mean; the constant with the least squared log error, which is what the closed-form probe of
  :mod:`mask3d_vit.eval.probe` minimises, so a probe of bias alone reproduces it). Segmentation: the most frequent
  labelled class.
- **position**: one value per pixel position (at the evaluation resolution, so train and validation frames must
  share one size, as the evaluation transform gives them). Depth: ``exp(mean log depth)`` of that pixel over the
  training frames where it is valid; segmentation: the most frequent class there. Positions never valid / never
  labelled in training get the constant.

Both are exact streaming statistics (sums and counts), so any number of frames fits in ``O(H * W * K)`` memory.
Ties between classes go to the lowest class id. Scores come from the project's metrics
(:class:`~mask3d_vit.eval.depth.DepthMeter`, :class:`~mask3d_vit.eval.segmentation.SegmentationMeter`), so a floor
and a model are scored identically.

Example::

    train = DataLoader(build_dataset(cfg.data, split="train", train=False), batch_size=32)
    val = DataLoader(build_dataset(cfg.data, split="val", train=False), batch_size=32)
    depth_floors(train, val, max_depth=10.0)   # {"constant": {"abs_rel": ..., "delta1": ...}, "position": {...}}

``train`` and ``val`` are any iterables of batch dicts (a ``DataLoader``, or ``[{"depth": d, "valid": v}]`` for
tensors already in memory).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ..data.sample import DEPTH, LABEL, VALID
from .depth import DepthMeter
from .segmentation import SegmentationMeter

FLOORS = ("constant", "position")


def _check_size(found: tuple[int, ...], expected: tuple[int, ...] | None, what: str) -> None:
    if expected is not None and found != expected:
        raise ValueError(f"{what} is {found[1]}x{found[0]} (W x H) but the floors were fit at "
                         f"{expected[1]}x{expected[0]}: position floors need every frame at one evaluation size")


@dataclass
class Floors:
    """Fitted floors of one task.

    Attributes:
        task: "depth" or "seg".
        constant: the one value predicted everywhere: metres (depth) or a class id ``1..K`` (seg).
        position: the value predicted at each pixel position: float32 ``(H, W)`` metres or int64 ``(H, W)`` ids.
    """
    task: str
    constant: float | int
    position: torch.Tensor

    def predict(self, kind: str, batch: dict) -> torch.Tensor:
        """The ``kind`` floor's prediction for ``batch`` (its frames must have the fitted size): float32
        ``(B, 1, H, W)`` metres (depth) or int64 ``(B, H, W)`` class ids (seg), as the models predict."""
        if kind not in FLOORS:
            raise ValueError(f"unknown floor {kind!r}; choose one of {', '.join(FLOORS)}")
        target = batch[DEPTH] if self.task == "depth" else batch[LABEL]
        _check_size(tuple(target.shape[-2:]), tuple(self.position.shape), f"a validation {self.task} map")
        one = self.position if kind == "position" else torch.full_like(self.position, self.constant)
        return one.expand(*target.shape).to(target.device)


def score(predictors: dict[str, Callable[[dict], torch.Tensor]], batches: Iterable[dict], *, task: str,
          num_classes: int = 0, min_depth: float = 1e-3, max_depth: float = 10.0) -> dict[str, dict]:
    """Score several predictors on the same validation batches with the project's meters, in one pass.

    Args:
        predictors: name -> function of a batch returning its prediction (float ``(B, 1, H, W)`` metres for depth,
            int ``(B, H, W)`` class ids for seg).
        batches: dicts with ``depth`` and ``valid`` (depth) or ``label`` (seg).
        task: "depth" or "seg".
        num_classes: K (seg).
        min_depth, max_depth: the scored ground-truth range (depth).

    Returns:
        name -> :meth:`DepthMeter.compute` or :meth:`SegmentationMeter.compute` (``miou``, ``pixel_acc``, per-class
        ``iou`` list...).
    """
    if task == "depth":
        meters = {name: DepthMeter(min_depth=min_depth, max_depth=max_depth) for name in predictors}
    else:
        meters = {name: SegmentationMeter(num_classes) for name in predictors}
    for batch in batches:
        for name, predict in predictors.items():
            pred = predict(batch).cpu()
            if task == "depth":
                meters[name].update(pred, batch[DEPTH].cpu(), batch[VALID].cpu())
            else:
                meters[name].update(pred, batch[LABEL].cpu())
    return {name: meter.compute() for name, meter in meters.items()}


def fit_depth_floors(batches: Iterable[dict]) -> Floors:
    """Fit both depth floors on training batches.

    Args:
        batches: dicts with ``depth`` float ``(B, 1, H, W)`` metres and ``valid`` bool ``(B, 1, H, W)``; pixels
            that are not valid or not > 0 are left out.

    Raises:
        ValueError: no valid pixel at all, or frames of different sizes.
    """
    log_sum = count = None
    for batch in batches:
        depth, valid = batch[DEPTH].double(), batch[VALID]
        size = tuple(depth.shape[-2:])
        _check_size(size, None if count is None else tuple(count.shape), "a training depth map")
        valid = (valid & (depth > 0)).reshape(-1, *size)
        logs = torch.where(valid, depth.reshape(-1, *size).clamp(min=1e-12).log(), 0.0).sum(0)
        log_sum = logs if log_sum is None else log_sum + logs
        count = valid.sum(0) if count is None else count + valid.sum(0)
    if count is None or not count.any():
        raise ValueError("no valid depth pixel in the training frames: the depth floors cannot be fit")
    constant = log_sum.sum() / count.sum()
    position = torch.where(count > 0, log_sum / count.clamp(min=1), constant).exp()
    return Floors(task="depth", constant=float(constant.exp()), position=position.float())


def fit_position_depth(depths: torch.Tensor, valids: torch.Tensor) -> torch.Tensor:
    """Per-pixel ``exp(mean log depth)`` over valid pixels of ``depths`` ``(N, 1, H, W)`` -> float32 ``(H, W)``."""
    return fit_depth_floors([{DEPTH: depths, VALID: valids}]).position


def fit_seg_floors(batches: Iterable[dict], num_classes: int) -> Floors:
    """Fit both segmentation floors on training batches.

    Args:
        batches: dicts with ``label`` int64 ``(B, H, W)``, ids ``0..num_classes`` (0 = unlabeled, not counted).
        num_classes: K, the number of real classes.

    Raises:
        ValueError: no labelled pixel at all, ids outside ``0..K``, or frames of different sizes.
    """
    counts = None
    for batch in batches:
        label = batch[LABEL].long()
        size = tuple(label.shape[-2:])
        _check_size(size, None if counts is None else tuple(counts.shape[1:]), "a training label map")
        if label.numel() and (int(label.min()) < 0 or int(label.max()) > num_classes):
            raise ValueError(f"label ids must lie in 0..{num_classes}; found {int(label.min())}..{int(label.max())}")
        one_hot = torch.nn.functional.one_hot(label.reshape(-1, *size), num_classes + 1).sum(0)   # (H, W, K+1)
        found = one_hot.permute(2, 0, 1)[1:]                                                       # (K, H, W)
        counts = found if counts is None else counts + found
    if counts is None or not counts.any():
        raise ValueError("no labelled pixel in the training frames: the segmentation floors cannot be fit")
    constant = int(counts.sum((1, 2)).argmax()) + 1
    # argmax returns the first maximum, so ties go to the lowest id.
    position = torch.where(counts.any(0), counts.argmax(0) + 1, constant)
    return Floors(task="seg", constant=constant, position=position)


def fit_position_seg(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-pixel most frequent labelled class of ``labels`` ``(N, H, W)`` -> int64 ``(H, W)`` class ids."""
    return fit_seg_floors([{LABEL: labels}], num_classes).position


def depth_floors(train: Iterable[dict], val: Iterable[dict], *, min_depth: float = 1e-3,
                 max_depth: float = 10.0) -> dict[str, dict[str, float]]:
    """Fit the depth floors on ``train`` and score them on ``val`` with :class:`DepthMeter`.

    Args:
        train, val: iterables of batch dicts with ``depth`` and ``valid`` (see :func:`fit_depth_floors`).
        min_depth, max_depth: the scored ground-truth range, as for models.

    Returns:
        ``{"constant": metrics, "position": metrics}``, each as :meth:`DepthMeter.compute` returns, plus
        ``constant_m`` (the constant floor's depth) in the constant's entry.
    """
    floors = fit_depth_floors(train)
    out = score(floor_predictors(floors), val, task="depth", min_depth=min_depth, max_depth=max_depth)
    out["constant"]["constant_m"] = floors.constant
    return out


def seg_floors(train: Iterable[dict], val: Iterable[dict], *, num_classes: int) -> dict[str, dict]:
    """Fit the segmentation floors on ``train`` and score them on ``val`` with :class:`SegmentationMeter`.

    Args:
        train, val: iterables of batch dicts with ``label`` (see :func:`fit_seg_floors`).
        num_classes: K, the number of real classes.

    Returns:
        ``{"constant": metrics, "position": metrics}``, each as :meth:`SegmentationMeter.compute` returns (``miou``,
        ``macc``, ``pixel_acc`` and the per-class lists ``iou``, ``acc``; percent).
    """
    return score(floor_predictors(fit_seg_floors(train, num_classes)), val, task="seg", num_classes=num_classes)


def floor_predictors(floors: Floors) -> dict[str, Callable[[dict], torch.Tensor]]:
    """``{"constant": f, "position": f}``: the floors as predictors for :func:`score`."""
    return {kind: functools.partial(floors.predict, kind) for kind in FLOORS}
