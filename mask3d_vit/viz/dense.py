"""Fine-tuning figures: RGB | ground truth | prediction, with column titles and a class legend (segmentation) or one
depth colour bar in metres (depth), drawn like the pre-training figure on the first validation frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.build import DataConfig, build_dataset
from ..data.classes import ClassSet
from ..data.sample import DEPTH, LABEL, RGB, VALID
from ..io import atomic_save
from .panels import depth_range, masked_black, overlay_labels, pyplot

COLUMNS = {"seg": ["RGB", "ground-truth classes", "predicted classes"],
           "depth": ["RGB", "true depth", "predicted depth"]}


def build_dense_figure(batch: dict, pred: torch.Tensor, *, class_set: ClassSet | None = None, max_rows: int = 4):
    """The matplotlib figure of RGB | ground truth | prediction rows.

    Args:
        batch: ``rgb`` uint8 ``(B, 3, H, W)`` and ``label`` ``(B, H, W)`` (segmentation) or ``depth`` / ``valid``
            ``(B, 1, H, W)`` (depth).
        pred: class ids ``(B, H, W)`` (segmentation) or depth in metres ``(B, 1, H, W)``.
        class_set: names and colours of the classes; given for segmentation, None for depth.
        max_rows: at most this many frames.
    """
    plt = pyplot()
    rgb = batch[RGB][:max_rows].cpu().permute(0, 2, 3, 1).numpy()
    n, size = rgb.shape[0], rgb.shape[1:3]
    task = "seg" if class_set is not None else "depth"
    legend_room = 2.2 if task == "seg" else 0.0
    fig, axes = plt.subplots(n, 3, figsize=(3.0 * 3 + legend_room, 3.0 * n * size[0] / size[1] + 1.0),
                             squeeze=False, layout="constrained")
    if task == "seg":
        truth, guess = batch[LABEL][:max_rows].cpu().numpy(), pred[:max_rows].cpu().numpy()
        panels = [[rgb[i], overlay_labels(rgb[i], truth[i], class_set.palette, alpha=0.7),
                   overlay_labels(rgb[i], guess[i], class_set.palette, alpha=0.7)] for i in range(n)]
        styles = [{}, {}, {}]
    else:
        depth = batch[DEPTH][:max_rows, 0].float().cpu().numpy()
        valid = batch[VALID][:max_rows, 0].cpu().numpy()
        lo, hi = depth_range(depth, valid)
        panels = [[rgb[i], np.ma.masked_where(~valid[i], depth[i]), pred[i, 0].float().cpu().numpy()]
                  for i in range(n)]
        styles = [{}] + [dict(cmap=masked_black("turbo"), vmin=lo, vmax=hi)] * 2
    for i, row in enumerate(panels):
        for j, (panel, style) in enumerate(zip(row, styles)):
            axes[i, j].imshow(panel, **style)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(COLUMNS[task][j], fontsize=11)
    if task == "seg":
        from matplotlib.patches import Patch
        present = [c for c in sorted(set(np.unique(truth).tolist()) | set(np.unique(guess).tolist()))
                   if 0 < c < len(class_set.names)]
        handles = [Patch(facecolor=class_set.palette[c] / 255, edgecolor="black", label=class_set.names[c])
                   for c in present]
        fig.legend(handles=handles, loc="outside right upper", title=f"classes ({class_set.name})", fontsize=10)
    else:
        fig.colorbar(axes[0, 1].images[0], ax=axes[:, 1:].ravel().tolist(), location="bottom", shrink=0.8,
                     label="depth (m), shared by these panels (black: no true depth)")
    return fig


class DenseFigure:
    """``visualizer(model, batch, path)``: :func:`build_dense_figure` of the model's predictions on the first
    ``max_rows`` frames of the validation split, un-augmented, the same frames at every step (the training batch
    the trainer passes in is not drawn: augmented crops say little about the model).

    Args:
        data: the run's data config.
        split: the validation split (``eval.split``).
        class_set: the classes (segmentation); None draws depth.
        max_rows: at most this many frames.
    """

    def __init__(self, data: DataConfig, *, split: str = "val", class_set: ClassSet | None = None, max_rows: int = 4):
        self.data, self.split, self.class_set, self.max_rows = data, split, class_set, max_rows
        self._frames: dict | None = None

    def frames(self) -> dict:
        """The drawn frames as one batch (read once)."""
        if self._frames is None:
            dataset = build_dataset(self.data, split=self.split, train=False,
                                    require_labels=self.class_set is not None)
            samples = [dataset[i] for i in range(min(self.max_rows, len(dataset)))]
            self._frames = torch.utils.data.default_collate(samples)
        return self._frames

    def __call__(self, model, batch: dict, path: str | Path) -> None:
        device = next(model.parameters()).device
        frames = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.frames().items()}
        fig = build_dense_figure(frames, model.predict(frames[RGB]), class_set=self.class_set,
                                 max_rows=self.max_rows)
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
        pyplot().close(fig)
