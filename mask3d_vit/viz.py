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


def depth_range(depth: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """The colour range (metres) of a depth map: the 2-98 % percentiles of its valid pixels ((0, 1) when none).

    A shared range drawn with :func:`colorbar_panel` or a matplotlib colour bar makes colours readable as metres.
    """
    valid = np.isfinite(depth) & (depth > 0) if valid is None else valid & np.isfinite(depth)
    vals = depth[valid]
    if not vals.size:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [2, 98])
    return float(lo), float(max(hi, lo + 1e-3))


def colorize_depth(depth: np.ndarray, valid: np.ndarray | None = None, vmin: float | None = None,
                   vmax: float | None = None, cmap: str = "turbo") -> np.ndarray:
    """``depth: (H, W)`` metres -> uint8 (H, W, 3); invalid pixels black. Range defaults to :func:`depth_range`."""
    from matplotlib import colormaps
    valid = np.isfinite(depth) & (depth > 0) if valid is None else valid
    lo, hi = depth_range(depth, valid)
    lo, hi = lo if vmin is None else vmin, hi if vmax is None else vmax
    x = np.clip((np.nan_to_num(depth) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = (colormaps[cmap](x)[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def _drawing(canvas: np.ndarray):
    """PIL image, drawing context and Pillow's built-in font over a uint8 ``(H, W, 3)`` canvas."""
    from PIL import Image, ImageDraw, ImageFont
    image = Image.fromarray(canvas)
    return image, ImageDraw.Draw(image), ImageFont.load_default()


def legend_panel(entries: list[tuple[str, np.ndarray]], *, row: int = 16) -> np.ndarray:
    """A legend: one row per ``(name, uint8 RGB colour)``, a swatch then the name. Returns uint8 (H, W, 3)."""
    width = 28 + 7 * max((len(name) for name, _ in entries), default=8)
    image, draw, font = _drawing(np.full((8 + row * len(entries), width, 3), 255, np.uint8))
    for i, (name, colour) in enumerate(entries):
        top = 4 + i * row
        draw.rectangle([4, top + 2, 16, top + 14], fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
        draw.text((22, top + 2), name, fill=(0, 0, 0), font=font)
    return np.asarray(image)


def colorbar_panel(height: int, vmin: float, vmax: float, *, cmap: str = "turbo", label: str = "depth (m)",
                   ticks: int = 5) -> np.ndarray:
    """A vertical colour bar from ``vmax`` (top) to ``vmin`` (bottom), titled ``label``, with ``ticks`` values.

    Returns:
        uint8 ``(max(height, 96), 80, 3)``.
    """
    from matplotlib import colormaps
    height = max(height, 96)
    top, bottom = 16, height - 8
    canvas = np.full((height, 80, 3), 255, np.uint8)
    canvas[top:bottom, 6:20] = (colormaps[cmap](np.linspace(1, 0, bottom - top))[:, None, :3] * 255).astype(np.uint8)
    image, draw, font = _drawing(canvas)
    draw.text((4, 2), label, fill=(0, 0, 0), font=font)
    for k in range(ticks):
        y = top + round(k * (bottom - top - 1) / (ticks - 1))
        draw.line([20, y, 24, y], fill=(0, 0, 0))
        draw.text((27, y - 5), f"{vmax - k * (vmax - vmin) / (ticks - 1):.2f}", fill=(0, 0, 0), font=font)
    return np.asarray(image)


def attach_panel(image: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """``image (H, W, 3)`` with ``panel`` on its right, both top-aligned on white: the image's pixels unchanged."""
    h = max(image.shape[0], panel.shape[0])
    out = np.full((h, image.shape[1] + panel.shape[1], 3), 255, np.uint8)
    out[:image.shape[0], :image.shape[1]] = image
    out[:panel.shape[0], image.shape[1]:] = panel
    return out


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

    The depth panels of every row share one colour scale (the true depth's 2-98 % range), shown by a colour bar in
    metres, so an untrained model's near-constant output reads as one flat colour; the error has its own bar.

    Args:
        batch: the input batch (``rgb`` uint8 (B,3,H,W), ``depth`` (B,1,H,W), ``valid``).
        out: the pre-training model's output (``pred_depth``, ``rgb_mask``, ``depth_mask``, optional ``pred_rgb``).
        path: PNG to write (atomically).
    """
    fig = build_reconstruction_figure(batch, out, max_rows)
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    _plt().close(fig)
    return Path(path)


def build_reconstruction_figure(batch: dict, out: dict, max_rows: int = 4):
    """The matplotlib figure of :func:`reconstruction_figure` (arguments alike)."""
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
        cols += ["predicted depth", "true depth", "|error|"]
    if pred_rgb is not None:
        cols.append("predicted RGB")
        pred_rgb = (pred_rgb[:max_rows].float().clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)
    n = rgb.shape[0]
    lo, hi = depth_range(depth, valid)
    err = np.where(valid, np.abs(pred - depth), 0.0) if pred is not None else None
    err_hi = max(float(np.percentile(err[valid], 98)), 1e-3) if pred is not None and valid.any() else 1.0
    depth_style = dict(cmap=_masked_black("turbo"), vmin=lo, vmax=hi)
    fig, axes = plt.subplots(n, len(cols), figsize=(2.2 * len(cols), 2.2 * n * size[0] / size[1] + 1.0),
                             squeeze=False, layout="constrained")
    for i in range(n):
        masked_rgb = rgb[i].copy()
        masked_rgb[hidden_rgb[i]] = 127
        panels = [(rgb[i], {}), (masked_rgb, {}),
                  (np.ma.masked_where(~valid[i] | hidden_d[i], depth[i]), depth_style)]
        if pred is not None:
            panels += [(pred[i], depth_style), (np.ma.masked_where(~valid[i], depth[i]), depth_style),
                       (np.ma.masked_where(~valid[i], err[i]), dict(cmap=_masked_black("magma"), vmin=0.0,
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


def _masked_black(name: str):
    """Colour map ``name`` drawing masked (invalid or hidden) pixels black."""
    from matplotlib import colormaps
    return colormaps[name].with_extremes(bad="black")


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
