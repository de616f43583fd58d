"""Dense-prediction figures: RGB | ground truth | prediction, as class overlays (seg) or coloured depth (depth)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.sample import DEPTH, LABEL, RGB, VALID
from ..io import write_png
from .panels import colorize_depth, overlay_labels


def segmentation_cells(batch: dict, pred: torch.Tensor, i: int, palette: np.ndarray) -> list[np.ndarray]:
    """Row ``i``'s ground truth and prediction (``pred``: ``(B, H, W)`` class ids) as overlays coloured by
    ``palette`` (uint8 ``(K + 1, 3)``)."""
    rgb = batch[RGB][i].permute(1, 2, 0).cpu().numpy()
    return [overlay_labels(rgb, m[i].cpu().numpy(), palette, alpha=0.7) for m in (batch[LABEL], pred)]


def depth_cells(batch: dict, pred: torch.Tensor, i: int) -> list[np.ndarray]:
    """Row ``i``'s ground-truth and predicted depth (``pred``: ``(B, 1, H, W)`` metres), on the ground truth's
    colour scale, so errors in scale show as colour shifts."""
    gt, valid = batch[DEPTH][i, 0].cpu().numpy(), batch[VALID][i, 0].cpu().numpy()
    lo, hi = (np.percentile(gt[valid], [2, 98]) if valid.any() else (0.0, 1.0))
    return [colorize_depth(gt, valid, vmin=lo, vmax=hi), colorize_depth(pred[i, 0].float().cpu().numpy(),
                                                                        vmin=lo, vmax=hi)]


class DenseFigure:
    """``visualizer(model, batch, path)``: a PNG grid, one row per sample (at most ``max_rows``):
    RGB | ground truth | prediction.

    Args:
        cells: ``cells(batch, pred, i) -> [ground truth, prediction]`` uint8 ``(H, W, 3)`` images of row ``i``
            (:func:`segmentation_cells` with a palette bound, or :func:`depth_cells`).
        max_rows: at most this many samples.
    """

    def __init__(self, cells, max_rows: int = 4):
        self.cells, self.max_rows = cells, max_rows

    def __call__(self, model, batch: dict, path: str | Path) -> None:
        pred = model.predict(batch[RGB])
        rows = [np.concatenate([batch[RGB][i].permute(1, 2, 0).cpu().numpy(), *self.cells(batch, pred, i)], axis=1)
                for i in range(min(self.max_rows, batch[RGB].shape[0]))]
        write_png(path, np.concatenate(rows, axis=0))
