"""The pre-training figure: masked inputs, the reconstructed depth and its error, on one colour scale."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_save
from .panels import depth_range, masked_black, pyplot


def patch_mask_to_pixels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask: (B, N) bool, True = hidden`` on a grid of square patches -> ``(B, H, W)`` bool."""
    h, w = size
    p = int(round(math.sqrt(h * w / mask.shape[1])))
    grid = mask.view(mask.shape[0], h // p, w // p)
    return grid.repeat_interleave(p, 1).repeat_interleave(p, 2)


def reconstruction_figure(batch: dict, out: dict, path: str | Path, max_rows: int = 4) -> Path:
    """Rows of RGB | masked RGB | masked depth | predicted depth | true depth | |error| (and predicted RGB).

    The depth panels of every row share one colour scale (the true depth's 2-98 % range), shown by a colour bar in
    metres, so an untrained model's near-constant output reads as one flat colour; the error has its own bar.

    Args:
        batch: the input batch (``rgb`` uint8 (B,3,H,W), ``depth`` (B,1,H,W), ``valid``).
        out: the pre-training model's output (``pred_depth``, ``rgb_mask``, ``depth_mask``, optional ``pred_rgb``).
        path: PNG to write (atomically).
    """
    fig = build_reconstruction_figure(batch, out, max_rows)
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    pyplot().close(fig)
    return Path(path)


def build_reconstruction_figure(batch: dict, out: dict, max_rows: int = 4):
    """The matplotlib figure of :func:`reconstruction_figure` (arguments alike)."""
    plt = pyplot()
    rgb = batch["rgb"][:max_rows].cpu().permute(0, 2, 3, 1).numpy()
    depth = batch["depth"][:max_rows, 0].float().cpu().numpy()
    valid = batch["valid"][:max_rows, 0].cpu().numpy() if "valid" in batch else depth > 0
    size = rgb.shape[1:3]
    hidden_rgb = patch_mask_to_pixels(out["rgb_mask"][:max_rows].cpu(), size).numpy()
    hidden_d = (patch_mask_to_pixels(out["depth_mask"][:max_rows].cpu(), size).numpy()
                if out.get("depth_mask") is not None else np.ones_like(hidden_rgb))
    pred = out["pred_depth"][:max_rows, 0].float().cpu().numpy() if out.get("pred_depth") is not None else None
    pred_rgb = out.get("pred_rgb")
    cols = ["RGB", "masked RGB", "masked depth"]
    if pred is not None:
        cols += ["predicted depth", "true depth", "|error|"]
    if pred_rgb is not None:
        cols.append("predicted RGB")
        pred_rgb = (pred_rgb[:max_rows].float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    n = rgb.shape[0]
    lo, hi = depth_range(depth, valid)
    err = np.where(valid, np.abs(pred - depth), 0.0) if pred is not None else None
    err_hi = max(float(np.percentile(err[valid], 98)), 1e-3) if pred is not None and valid.any() else 1.0
    depth_style = dict(cmap=masked_black("turbo"), vmin=lo, vmax=hi)
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n * size[0] / size[1] + 1.0),
                             squeeze=False, layout="constrained")
    for i in range(n):
        masked_rgb = rgb[i].copy()
        masked_rgb[hidden_rgb[i]] = 127
        panels = [(rgb[i], {}), (masked_rgb, {}),
                  (np.ma.masked_where(~valid[i] | hidden_d[i], depth[i]), depth_style)]
        if pred is not None:
            panels += [(pred[i], depth_style), (np.ma.masked_where(~valid[i], depth[i]), depth_style),
                       (np.ma.masked_where(~valid[i], err[i]), dict(cmap=masked_black("magma"), vmin=0.0,
                                                                     vmax=err_hi))]
        if pred_rgb is not None:
            panels.append((pred_rgb[i], {}))
        for j, (panel, style) in enumerate(panels):
            axes[i, j].imshow(panel, **style)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(cols[j], fontsize=9)
    depth_cols = [2, 3, 4] if pred is not None else [2]
    fig.colorbar(axes[0, 2].images[0], ax=axes[:, depth_cols].ravel().tolist(), location="bottom", shrink=0.8,
                 label="depth (m), shared by these panels" if pred is not None else "depth (m)")
    if pred is not None:
        fig.colorbar(axes[0, 5].images[0], ax=axes[:, 5].tolist(), location="bottom", label="|error| (m)")
    return fig


def reconstruction_visualizer(model, batch: dict, path: Path) -> None:
    """``visualizer(model, batch, path)`` of pre-training: :func:`reconstruction_figure` of the model's output."""
    reconstruction_figure(batch, model(batch), path)
