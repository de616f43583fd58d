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


def text_size(height: int) -> int:
    """Pixel size of panel text beside an image ``height`` pixels high: about 1/40 of it, never under 11 px, so a
    legend or colour bar reads the same on a 1080-pixel photo as on a training crop."""
    return max(11, round(height / 40))


def _font(size: int):
    """Pillow's built-in scalable font at ``size`` pixels."""
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def _drawing(canvas: np.ndarray):
    """PIL image and drawing context over a uint8 ``(H, W, 3)`` canvas."""
    from PIL import Image, ImageDraw
    image = Image.fromarray(canvas)
    return image, ImageDraw.Draw(image)


def legend_panel(entries: list[tuple[str, np.ndarray]], *, size: int = 11) -> np.ndarray:
    """A legend: one row per ``(name, uint8 RGB colour)``, a swatch then the name, in ``size``-pixel text
    (:func:`text_size` of the image it goes beside). Returns uint8 (H, W, 3)."""
    font, row, pad = _font(size), round(1.5 * size), max(4, size // 3)
    text_width = max((font.getlength(name) for name, _ in entries), default=8 * size)
    image, draw = _drawing(np.full((2 * pad + row * len(entries), round(4 * pad + size + text_width), 3), 255,
                                   np.uint8))
    for i, (name, colour) in enumerate(entries):
        top = pad + i * row
        draw.rectangle([pad, top + 2, pad + size, top + 2 + size], fill=tuple(int(c) for c in colour),
                       outline=(0, 0, 0))
        draw.text((2 * pad + size, top + 2 + size / 2), name, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(image)


def colorbar_panel(height: int, vmin: float, vmax: float, *, cmap: str = "turbo", label: str = "depth (m)",
                   ticks: int = 5) -> np.ndarray:
    """A vertical colour bar from ``vmax`` (top) to ``vmin`` (bottom), titled ``label``, with ``ticks`` values, its
    text :func:`text_size` of ``height`` (the title ends above the top tick's value).

    Returns:
        uint8 ``(max(height, 96), W, 3)``, W fitting the title and the values.
    """
    from matplotlib import colormaps
    height = max(height, 96)
    size = text_size(height)
    font, pad = _font(size), max(4, size // 3)
    values = [f"{vmax - k * (vmax - vmin) / (ticks - 1):.2f}" for k in range(ticks)]
    bar_left, bar_right = pad, pad + size
    tick_end = bar_right + pad // 2
    width = round(max(font.getlength(label) + 2 * pad, tick_end + pad + max(map(font.getlength, values)) + pad))
    top, bottom = 2 * pad + round(1.8 * size), height - pad - size // 2  # a tick value is centred on its tick
    canvas = np.full((height, width, 3), 255, np.uint8)
    canvas[top:bottom, bar_left:bar_right] = (colormaps[cmap](np.linspace(1, 0, bottom - top))[:, None, :3]
                                              * 255).astype(np.uint8)
    image, draw = _drawing(canvas)
    draw.text((pad, pad), label, fill=(0, 0, 0), font=font, anchor="lt")
    for k, value in enumerate(values):
        y = top + round(k * (bottom - top - 1) / (ticks - 1))
        draw.line([bar_right, y, tick_end, y], fill=(0, 0, 0), width=max(1, size // 12))
        draw.text((tick_end + pad, y), value, fill=(0, 0, 0), font=font, anchor="lm")
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
