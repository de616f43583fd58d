"""Image-array building blocks every figure shares: coloured depth, class overlays, legends and colour bars."""
from __future__ import annotations

import numpy as np


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


def masked_black(name: str):
    """Colour map ``name`` drawing masked (invalid or hidden) pixels black."""
    from matplotlib import colormaps
    return colormaps[name].with_extremes(bad="black")


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


def pyplot():
    """matplotlib's pyplot on the headless Agg backend, imported on first use (it costs a second)."""
    import matplotlib
    matplotlib.use("Agg")  # headless: figures go to files, never to a screen
    import matplotlib.pyplot as plt
    return plt
