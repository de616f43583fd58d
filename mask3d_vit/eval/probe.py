"""Frozen-feature probes fit to convergence in closed form, reported beside the image-blind floors.

What a probe measures here: how much of a task a *linear* map can read off a frozen encoder's patch tokens. A head
trained for a few dozen SGD steps from a random initialisation measures its initialisation instead, so the probe
is the ridge-regression optimum, solved exactly:

- **features**: the encoder's patch tokens after its final LayerNorm (the class token dropped), ``(B, N, D)`` for an
  image padded to a multiple of the patch size ``p``: by default those of the last block (``forward_features``);
  ``layer=k`` reads block ``k`` instead (0-based, negative counts from the end), through the same final norm, so
  a probe of a middle block asks what the encoder knew before its last blocks specialised to the pre-training
  decoder.
- **targets**: each patch is cut into ``cells x cells`` cells (stride ``s = p / cells``, sampled at the cell's
  centre pixel, as the fine-tuning loss grid is). A patch token predicts all its cells: depth -> the natural log of
  depth in metres (1 value per cell), seg -> a one-hot class vector (K values per cell; the prediction is the
  class of the largest score). So the probe is one linear map ``(D + 1) -> cells^2 * C`` shared by all patches
  (the ``+ 1`` is an unpenalised bias).
- **what is left out**: cells without valid depth (depth) or unlabelled (seg) enter neither the fit nor the
  metrics; each output cell has its own normal equations over the patches where it is valid, so nothing is imputed.
- **the fit**: ``X^T X`` and ``X^T Y`` are summed over batches in float64 (memory ``cells^2 * D^2``, whatever the
  number of frames), then ``(X^T X + lambda * P) W = X^T Y`` is solved per cell (one eigendecomposition per cell serves every
  ``lambda``). ``P`` penalises the feature
  weights, not the bias, and is scaled by the features' mean variance times the cell's sample count, so a ridge
  strength ``alpha`` means the same for every encoder and data size. ``alpha`` is chosen from a grid by the
  squared error on held-out training frames (every ``holdout_every``-th frame), computed exactly from their own
  sums; the probe is then refit on all training frames with that ``alpha``.
- **predictions**: the cell grid is resized bilinearly to the image (log depth, or class scores) and scored by the
  same meters as the fine-tuned models and the floors (:mod:`mask3d_vit.eval.baselines`).

Example::

    encoder = load_probe_encoder("vit_tiny_patch16", img_size=(96, 128), init_from="runs/m3d")
    result = probe_backbone(encoder, train_loader, val_loader, task="depth", max_depth=10.0)
    print(format_report(result))          # probe beside the constant and position-only floors

``train_loader`` must yield un-augmented frames at the evaluation size (the evaluation transform): the
position-only floor is fit on the same frames.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from ..data.sample import DEPTH, LABEL, RGB, VALID
from ..models.backbone import pad_to_multiple
from ..models.heads import resize
from ..models.vit import build_encoder, normalize_rgb
from ..models.weights import load_encoder_weights
from .baselines import fit_depth_floors, fit_seg_floors, floor_predictors, score

TASKS = ("depth", "seg")
# Relative ridge strengths tried (see the module docstring); 0 = plain least squares.
RIDGES = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def load_probe_encoder(name: str, *, img_size: Sequence[int], init_from: str | None = None) -> VisionTransformer:
    """A frozen encoder for probing, with its final norm (unlike the pruned fine-tuning backbone).

    Args:
        name: encoder name (see :data:`mask3d_vit.models.vit.ENCODER_NAMES`).
        img_size: nominal ``(H, W)`` that loaded position embeddings are resampled to.
        init_from: weights as for :func:`mask3d_vit.models.weights.load_encoder_weights`; None = random (scratch).
    """
    encoder = build_encoder(name, img_size=tuple(img_size))
    if init_from:
        load_encoder_weights(encoder, init_from)
    return encoder.requires_grad_(False).eval()


def check_layer(encoder: VisionTransformer, layer: int) -> None:
    """Raise ValueError naming ``layer`` unless it indexes one of ``encoder``'s blocks."""
    depth = len(encoder.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"layer={layer} is not a block of this {depth}-block encoder: choose 0..{depth - 1} or "
                         f"-{depth}..-1 (-1 = the last)")


@torch.no_grad()
def patch_features(encoder: VisionTransformer, rgb: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """The normed patch tokens of block ``layer``: ``rgb`` uint8 ``(B, 3, H, W)`` -> float32 ``(B, N, D)``, ``N``
    = the ``ceil(H/p) x ceil(W/p)`` grid in row-major order. ``layer=-1`` is ``forward_features`` exactly."""
    check_layer(encoder, layer)
    x = pad_to_multiple(normalize_rgb(rgb), encoder.patch_embed.patch_size[0])
    # stop_early: the blocks after ``layer`` are not run.
    (tokens,) = encoder.forward_intermediates(x, indices=[layer], norm=True, stop_early=True, output_fmt="NLC",
                                              intermediates_only=True)
    return tokens.float()


def cell_targets(batch: dict, *, task: str, patch: int, cells: int, num_classes: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-patch targets on the cell grid.

    Args:
        batch: ``depth``/``valid`` (depth) or ``label`` (seg), ``(B, [1,] H, W)``.
        task: "depth" or "seg".
        patch: the encoder's patch size ``p``.
        cells: cells per patch side (must divide ``p``).
        num_classes: K (seg).

    Returns:
        ``y`` float64 ``(B, N, cells^2, C)`` (log depth, C = 1; or one-hot classes, C = K) and ``mask`` bool
        ``(B, N, cells^2)``, True where the cell has valid depth / a label.
    """
    s = patch // cells
    if task == "depth":
        depth = pad_to_multiple(batch[DEPTH], patch)[..., s // 2::s, s // 2::s]
        mask = (pad_to_multiple(batch[VALID], patch, False)[..., s // 2::s, s // 2::s] & (depth > 0))[:, 0]
        y = torch.where(mask[:, None], depth.double().clamp(min=1e-12).log(), 0.0)        # (B, 1, h*c, w*c)
    else:
        label = pad_to_multiple(batch[LABEL], patch, 0)[..., s // 2::s, s // 2::s]      # (B, h*c, w*c)
        mask = label > 0
        y = F.one_hot(label.long(), num_classes + 1)[..., 1:].permute(0, 3, 1, 2).double()
    b, c, hh, ww = y.shape
    h, w = hh // cells, ww // cells
    y = y.reshape(b, c, h, cells, w, cells).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, cells * cells, c)
    mask = mask.reshape(b, h, cells, w, cells).permute(0, 1, 3, 2, 4).reshape(b, h * w, cells * cells)
    return y, mask


def cells_to_image(scores: torch.Tensor, *, grid: tuple[int, int], cells: int, patch: int,
                   size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`cell_targets`' layout: ``(B, N, cells^2, C)`` -> ``(B, C, H, W)``, bilinearly resized
    from the cell grid to the padded image, then cropped to ``size``."""
    b, _, _, c = scores.shape
    h, w = grid
    x = scores.reshape(b, h, w, cells, cells, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * cells, w * cells)
    return resize(x.float(), (h * patch, w * patch))[..., :size[0], :size[1]]


@dataclass
class RidgeSums:
    """Sufficient statistics of a masked multi-output least-squares problem, summed over batches.

    Attributes:
        gram: float64 ``(S, D + 1, D + 1)``: per output cell, ``sum_r m_rs [x_r, 1] [x_r, 1]^T``.
        cross: float64 ``(S, D + 1, C)``: per output cell, ``sum_r m_rs [x_r, 1] y_rs^T``.
        yy: ``sum m * |y|^2`` (for held-out errors).
        count: number of target values (masked cells x C).
    """
    gram: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    yy: float = 0.0
    count: int = 0

    def update(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> None:
        """``x`` ``(R, D)`` features, ``y`` ``(R, S, C)`` targets, ``mask`` bool ``(R, S)``."""
        x1 = torch.cat([x.double(), x.new_ones(x.shape[0], 1, dtype=torch.float64)], dim=1)   # (R, D+1)
        m = mask.double()
        # One cell at a time keeps the temporary at (R, D+1) instead of (R, S, D+1).
        gram = torch.stack([(x1 * m[:, s, None]).T @ x1 for s in range(m.shape[1])])
        cross = torch.stack([(x1 * m[:, s, None]).T @ y[:, s].double() for s in range(m.shape[1])])
        self.gram = gram if self.gram is None else self.gram + gram
        self.cross = cross if self.cross is None else self.cross + cross
        self.yy += float((y.double() ** 2 * m[..., None]).sum())
        self.count += int(mask.sum()) * y.shape[-1]

    def __add__(self, other: "RidgeSums") -> "RidgeSums":
        if other.gram is None:
            return self
        if self.gram is None:
            return other
        return RidgeSums(self.gram + other.gram, self.cross + other.cross, self.yy + other.yy,
                         self.count + other.count)


def ridge_solutions(sums: RidgeSums, alphas: Sequence[float]) -> dict[float, torch.Tensor]:
    """Ridge solutions ``W`` float64 ``(S, D + 1, C)`` (last row: the bias), one per relative strength ``alpha``.

    The bias is unpenalised, so the weights solve ridge on centred features: ``(Cov + alpha * v * I) w = cov_xy``
    with ``v`` the mean feature variance of the cell, then ``bias = mean_y - mean_x . w``. One eigendecomposition
    of each cell's covariance serves every ``alpha``; directions of (numerically) zero variance get no weight, so
    ``alpha = 0`` is the minimum-norm least-squares solution, also with redundant features (LayerNorm'd tokens
    sum to a constant) or cells that never occur (all weights 0).
    """
    if sums.gram is None:
        raise ValueError("no training rows were accumulated; the probe cannot be fit")
    if any(a < 0 for a in alphas):
        raise ValueError(f"ridge strengths must be >= 0, got {list(alphas)}")
    gram, cross = sums.gram.cpu(), sums.cross.cpu()
    d = gram.shape[-1] - 1
    n = gram[:, d, d].clamp(min=1)[:, None]                                   # (S, 1) rows per cell
    mean_x, mean_y = gram[:, :d, d] / n, cross[:, d] / n                     # (S, D), (S, C)
    cov = gram[:, :d, :d] / n[..., None] - mean_x[:, :, None] * mean_x[:, None, :]
    cov_xy = cross[:, :d] / n[..., None] - mean_x[:, :, None] * mean_y[:, None, :]
    eigvals, eigvecs = torch.linalg.eigh(cov)                                # (S, D), (S, D, D)
    eigvals = eigvals.clamp(min=0)
    variance = eigvals.mean(1, keepdim=True)                                 # trace / D
    zero = eigvals <= 1e-10 * eigvals.amax(1, keepdim=True).clamp(min=1e-300)
    projected = eigvecs.transpose(1, 2) @ cov_xy                             # (S, D, C)
    out = {}
    for alpha in alphas:
        inverse = torch.where(zero, 0.0, 1.0 / (eigvals + alpha * variance).clamp(min=1e-300))
        w = eigvecs @ (inverse[..., None] * projected)
        bias = mean_y - (mean_x[..., None] * w).sum(1)
        out[float(alpha)] = torch.cat([w, bias[:, None]], dim=1)
    return out


def solve_ridge(sums: RidgeSums, alpha: float) -> torch.Tensor:
    """The ridge solution for one relative strength ``alpha`` (see :func:`ridge_solutions`)."""
    return ridge_solutions(sums, [alpha])[float(alpha)]


def mean_squared_error(sums: RidgeSums, weights: torch.Tensor) -> float:
    """Mean squared error of ``weights`` on the rows summed in ``sums``, from the sums alone:
    ``(sum_s tr(W_s^T G_s W_s) - 2 tr(W_s^T B_s) + yy) / count``."""
    if not sums.count:
        return math.nan
    gram, cross = sums.gram.cpu(), sums.cross.cpu()
    quad = torch.einsum("sdc,sde,sec->", weights, gram, weights)
    return float((quad - 2 * (weights * cross).sum() + sums.yy) / sums.count)


def choose_ridge(fit: RidgeSums, held: RidgeSums, alphas: Sequence[float] = RIDGES) -> tuple[float, dict]:
    """The ``alpha`` with the least held-out squared error (ties: the larger, i.e. the simpler model).

    Returns:
        (alpha, {alpha: held-out mean squared error}).
    """
    if not alphas:
        raise ValueError("no ridge strengths to choose from")
    errors = {a: mean_squared_error(held, w) for a, w in ridge_solutions(fit, alphas).items()}
    best = min(errors, key=lambda a: (errors[a], -a))
    return best, errors


@dataclass
class LinearProbe:
    """A fitted probe: per-cell linear maps from patch tokens.

    Attributes:
        task: "depth" or "seg".
        weights: float64 ``(cells^2, D + 1, C)``.
        cells: cells per patch side.
        alpha: the ridge strength it was fit with.
        heldout_mse: held-out squared error per ridge strength tried (empty when none was held out).
        layer: the block whose tokens it reads (:func:`patch_features`).
    """
    task: str
    weights: torch.Tensor
    cells: int
    alpha: float
    heldout_mse: dict = field(default_factory=dict)
    layer: int = -1

    @torch.no_grad()
    def predict(self, encoder: VisionTransformer, rgb: torch.Tensor) -> torch.Tensor:
        """``rgb`` uint8 ``(B, 3, H, W)`` -> float32 ``(B, 1, H, W)`` metres (depth) or int64 ``(B, H, W)`` class
        ids ``1..K`` (seg), as the fine-tuned models predict."""
        p = encoder.patch_embed.patch_size[0]
        h, w = rgb.shape[-2:]
        x = patch_features(encoder, rgb, self.layer).double()
        weights = self.weights.to(x.device)
        scores = torch.einsum("bnd,sdc->bnsc", x, weights[:, :-1]) + weights[:, -1]
        out = cells_to_image(scores, grid=(math.ceil(h / p), math.ceil(w / p)), cells=self.cells, patch=p,
                             size=(h, w))
        return out.exp() if self.task == "depth" else out.argmax(1) + 1


def fit_probe(encoder: VisionTransformer, batches: Iterable[dict], *, task: str, num_classes: int = 0,
              cells: int = 4, holdout_every: int = 5, alphas: Sequence[float] = RIDGES, layer: int = -1,
              device: torch.device | str = "cpu") -> LinearProbe:
    """Fit the closed-form probe on ``batches`` (see the module docstring).

    Args:
        encoder: a timm ViT with its final norm (e.g. :func:`load_probe_encoder`); it is not changed.
        batches: training batches (``rgb`` and the task's targets).
        task: "depth" or "seg".
        num_classes: K (seg).
        cells: cells per patch side; must divide the patch size (4 at patch 16 = a stride-4 output grid).
        holdout_every: every this-many-th training frame is held out to choose ``alpha``; 0 or a single ``alpha``
            = no hold-out (fit on everything with ``alphas[0]``).
        alphas: relative ridge strengths to choose from.
        layer: the block whose normed tokens are the features (:func:`patch_features`; -1 = the last).
        device: where features and sums are computed.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "seg" and num_classes < 1:
        raise ValueError(f"segmentation needs num_classes >= 1, got {num_classes}")
    patch = encoder.patch_embed.patch_size[0]
    if cells < 1 or patch % cells:
        raise ValueError(f"cells={cells} must divide the patch size {patch}")
    choose = holdout_every > 1 and len(alphas) > 1
    fit, held = RidgeSums(), RidgeSums()
    seen = 0
    for batch in batches:
        x = patch_features(encoder, batch[RGB].to(device), layer)                            # (B, N, D)
        y, mask = cell_targets({k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}, task=task,
                               patch=patch, cells=cells, num_classes=num_classes)
        frame = torch.arange(seen, seen + x.shape[0], device=device)
        seen += x.shape[0]
        out = (frame % holdout_every == holdout_every - 1) if choose else torch.zeros_like(frame, dtype=torch.bool)
        for sums, rows in ((fit, ~out), (held, out)):
            if rows.any():
                sums.update(x[rows].flatten(0, 1), y[rows].flatten(0, 1), mask[rows].flatten(0, 1))
    if choose and not held.count:
        raise ValueError(f"no held-out frame with targets (every {holdout_every}th of {seen} frames): use more "
                         f"frames or holdout_every=0 with a single ridge strength")
    alpha, errors = choose_ridge(fit, held, alphas) if choose else (float(alphas[0]), {})
    return LinearProbe(task=task, weights=solve_ridge(fit + held, alpha), cells=cells, alpha=alpha,
                       heldout_mse=errors, layer=layer)


def probe_backbone(encoder: VisionTransformer, train: Iterable[dict], val: Iterable[dict], *, task: str,
                   num_classes: int = 0, cells: int = 4, holdout_every: int = 5, alphas: Sequence[float] = RIDGES,
                   min_depth: float = 1e-3, max_depth: float = 10.0, layer: int = -1,
                   device: torch.device | str = "cpu") -> dict:
    """Fit the closed-form probe and the floors on ``train``, score all three on ``val``.

    Args:
        encoder: a timm ViT with its final norm (:func:`load_probe_encoder`).
        train: un-augmented training batches at the evaluation size: a ``DataLoader`` or a list (iterated twice,
            once for the floors and once for the probe; memory stays ``O(cells^2 D^2 + H W K)``).
        val: validation batches at the same size (iterated once).
        task: "depth" or "seg".
        num_classes: K (seg).
        cells, holdout_every, alphas, layer, device: see :func:`fit_probe`.
        min_depth, max_depth: the scored depth range (depth).

    Returns:
        ``{"task", "probe": metrics, "constant": metrics, "position": metrics, "alpha", "heldout_mse", "cells",
        "layer"}``;
        metrics as :func:`mask3d_vit.eval.baselines.score` returns (depth: ``abs_rel``, ``delta1``... and
        ``_med``; seg: ``miou``, ``pixel_acc``, per-class ``iou``...). ``constant`` also holds ``constant_m``
        (depth) or ``constant_class`` (seg): the constant floor's value.
    """
    if iter(train) is train:
        raise ValueError("train is a one-shot iterator; pass a DataLoader or a list: the floors and the probe "
                         "each read the training frames once")
    encoder = encoder.to(device).eval()
    floors = fit_depth_floors(train) if task == "depth" else fit_seg_floors(train, num_classes)
    probe = fit_probe(encoder, train, task=task, num_classes=num_classes, cells=cells, holdout_every=holdout_every,
                      alphas=alphas, layer=layer, device=device)
    predictors = {**floor_predictors(floors), "probe": lambda b: probe.predict(encoder, b[RGB].to(device))}
    metrics = score(predictors, val, task=task, num_classes=num_classes, min_depth=min_depth, max_depth=max_depth)
    metrics["constant"]["constant_m" if task == "depth" else "constant_class"] = floors.constant
    return {"task": task, **metrics, "alpha": probe.alpha, "heldout_mse": probe.heldout_mse, "cells": cells,
            "layer": layer}


# (metric key, column title, decimals) of the report tables.
DEPTH_COLUMNS = (("abs_rel", "AbsRel", 3), ("rmse", "RMSE", 3), ("delta1", "delta1", 1),
                 ("abs_rel_med", "AbsRel (median-scaled)", 3), ("delta1_med", "delta1 (median-scaled)", 1))
SEG_COLUMNS = (("miou", "mIoU", 1), ("macc", "mAcc", 1), ("pixel_acc", "pixel acc", 1))


def load_ceiling(path: str | Path, task: str, split: str = "val") -> dict:
    """The metrics of a supervised run to print as the ceiling.

    Args:
        path: a fine-tuning run directory (its ``eval_<split>.json``) or such a JSON file.
        task: the probe's task; the file's must match.
        split: which evaluation of a run directory.
    """
    path = Path(path)
    file = path / f"eval_{split}.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"ceiling {path}: no {file.name} (give a fine-tuning run directory that has been "
                                f"evaluated on split {split!r}, or its eval_<split>.json)")
    metrics = json.loads(file.read_text())
    if metrics.get("task") != task:
        raise ValueError(f"ceiling {file} is a {metrics.get('task')!r} evaluation, not {task!r}")
    return metrics


def _cell(value, decimals: int) -> str:
    return "-" if value is None or value != value else f"{value:.{decimals}f}"


def format_report(result: dict, *, ceiling: dict | None = None, ceiling_name: str = "",
                  class_names: Sequence[str] = ()) -> str:
    """A markdown report: the probe between its floors and (when given) the supervised ceiling.

    Args:
        result: :func:`probe_backbone`'s output.
        ceiling: metrics of the same encoder trained supervised for the task (:func:`load_ceiling`).
        ceiling_name: where the ceiling came from (shown in its row).
        class_names: seg: the class set's names, "unlabeled" first; adds the per-class IoU table.
    """
    task = result["task"]
    columns = DEPTH_COLUMNS if task == "depth" else SEG_COLUMNS
    constant = (f"{result['constant']['constant_m']:.2f} m" if task == "depth"
                else f"class {result['constant']['constant_class']}")
    if class_names and task == "seg":
        constant = f"'{class_names[result['constant']['constant_class']]}'"
    rows = [(f"floor: constant ({constant})", result["constant"]),
            ("floor: position only", result["position"]),
            (f"probe: closed-form ridge (alpha={result['alpha']:g}"
             + (f", block {result['layer']})" if result.get("layer", -1) != -1 else ")"), result["probe"])]
    if ceiling is not None:
        rows.append((f"ceiling: supervised{f' ({ceiling_name})' if ceiling_name else ''}", ceiling))
    lines = ["| predictor | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(_cell(m.get(k), d) for k, _, d in columns) + " |" for name, m in rows]
    if task == "seg" and class_names:
        if len(class_names) != len(result["probe"]["iou"]) + 1:
            raise ValueError(f"{len(class_names)} class names (with 'unlabeled') for "
                             f"{len(result['probe']['iou'])} classes")
        short = ["constant", "position", "probe", "ceiling"][:len(rows)]
        lines += ["", "IoU per class:", "", "| class | " + " | ".join(short) + " |", "|---|" + "---:|" * len(rows)]
        ious = [m.get("iou") or [] for _, m in rows]
        lines += [f"| {name} | " + " | ".join(_cell(iou[i] if i < len(iou) else None, 1) for iou in ious) + " |"
                  for i, name in enumerate(class_names[1:])]
    return "\n".join(lines) + "\n"
