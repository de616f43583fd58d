"""Figures a person looks at: reconstructions, loss curves, coloured depth and segmentation overlays."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .io import atomic_save


def _plt():
    import matplotlib
    matplotlib.use("Agg")  # headless: figures go to files, never to a screen
    import matplotlib.pyplot as plt
    return plt


def colorize_depth(depth: np.ndarray, valid: np.ndarray | None = None, vmin: float | None = None,
                   vmax: float | None = None, cmap: str = "turbo") -> np.ndarray:
    """``depth: (H, W)`` metres -> uint8 (H, W, 3); invalid pixels black. Range defaults to the valid 2-98 %."""
    from matplotlib import colormaps
    valid = np.isfinite(depth) & (depth > 0) if valid is None else valid
    vals = depth[valid]
    lo = vmin if vmin is not None else (np.percentile(vals, 2) if vals.size else 0.0)
    hi = vmax if vmax is not None else (np.percentile(vals, 98) if vals.size else 1.0)
    x = np.clip((np.nan_to_num(depth) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = (colormaps[cmap](x)[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def overlay_labels(rgb: np.ndarray, label: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a class-id map ``(H, W)`` onto ``rgb (H, W, 3)`` with ``palette (K, 3)``; id 0 stays unblended."""
    colour = palette[np.clip(label, 0, len(palette) - 1)].astype(np.float32)
    out = rgb.astype(np.float32)
    m = label > 0
    out[m] = (1 - alpha) * out[m] + alpha * colour[m]
    return out.astype(np.uint8)


def patch_mask_to_pixels(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``mask: (B, N) bool, True = hidden`` on a grid of square patches -> ``(B, H, W)`` bool."""
    h, w = size
    p = int(round(math.sqrt(h * w / mask.shape[1])))
    grid = mask.view(mask.shape[0], h // p, w // p)
    return grid.repeat_interleave(p, 1).repeat_interleave(p, 2)


def reconstruction_figure(batch: dict, out: dict, path: str | Path, max_rows: int = 4) -> Path:
    """Rows of RGB | masked RGB | masked depth | predicted depth | true depth | |error| (and predicted RGB).

    Args:
        batch: the input batch (``rgb`` uint8 (B,3,H,W), ``depth`` (B,1,H,W), ``valid``).
        out: the pre-training model's output (``pred_depth``, ``rgb_mask``, ``depth_mask``, optional ``pred_rgb``).
        path: PNG to write (atomically).
    """
    plt = _plt()
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
        cols += ["predicted depth", "true depth", "|error| (m)"]
    if pred_rgb is not None:
        cols.append("predicted RGB")
        pred_rgb = (pred_rgb[:max_rows].float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    n = rgb.shape[0]
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n * size[0] / size[1] + 0.4),
                             squeeze=False)
    for i in range(n):
        vals = depth[i][valid[i]]
        lo, hi = (np.percentile(vals, 2), np.percentile(vals, 98)) if vals.size else (0.0, 1.0)
        masked_rgb = rgb[i].copy()
        masked_rgb[hidden_rgb[i]] = 127
        panels = [rgb[i], masked_rgb, colorize_depth(depth[i], valid[i] & ~hidden_d[i], lo, hi)]
        if pred is not None:
            err = np.where(valid[i], np.abs(pred[i] - depth[i]), 0)
            panels += [colorize_depth(pred[i], np.ones_like(valid[i]), lo, hi), colorize_depth(depth[i], valid[i], lo, hi),
                       colorize_depth(err, valid[i], 0.0, max(float(np.percentile(err[valid[i]], 98)) if vals.size
                                                               else 1.0, 1e-3), cmap="magma")]
        if pred_rgb is not None:
            panels.append(pred_rgb[i])
        for j, panel in enumerate(panels):
            axes[i, j].imshow(panel)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(cols[j], fontsize=9)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return Path(path)


def loss_curve(records: list[dict], path: str | Path, keys: tuple[str, ...] | None = None,
               title: str = "") -> Path:
    """Plot ``loss*`` series (or ``keys``) of metrics.jsonl records against step, log-scaled if they span decades."""
    plt = _plt()
    keys = keys or tuple(sorted({k for r in records for k in r if k.startswith("loss")}))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return Path(path)
