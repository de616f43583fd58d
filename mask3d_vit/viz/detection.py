"""Detection figures: instances drawn on an image (the training figure and ``predict`` share the drawing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from ..data.classes import ClassSet
from ..data.instances import INSTANCES
from ..data.sample import RGB
from ..io import write_png


def draw_instances(image: np.ndarray | torch.Tensor, prediction: dict, class_set: ClassSet, *,
                   score_threshold: float = 0.5, mask_threshold: float = 0.5, alpha: float = 0.5) -> np.ndarray:
    """Draw detections (or ground-truth targets) on an image: filled masks, boxes and "class score" captions.

    Args:
        image: uint8 (H, W, 3) array or uint8 (3, H, W) tensor (a sample's ``rgb``).
        prediction: ``boxes`` (N, 4) x0y0x1y1, ``labels`` (N,) class ids of ``class_set``, ``masks`` (N, 1, H, W)
            or (N, H, W), probabilities or binary, and optionally ``scores`` (N,); a target dict without scores
            is drawn whole.
        class_set: gives the class names and colours.
        score_threshold: detections scoring below this are not drawn.
        mask_threshold: probability above which a pixel is inside a mask.
        alpha: opacity of the mask fill.

    Returns:
        uint8 (H, W, 3).
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    else:
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a uint8 (3, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
        canvas = image
    canvas = canvas.cpu()
    labels = prediction["labels"].cpu()
    scores = prediction.get("scores")
    keep = scores.cpu() >= score_threshold if scores is not None else torch.ones(len(labels), dtype=torch.bool)
    masks = prediction["masks"].cpu()
    masks = (masks[:, 0] if masks.ndim == 4 else masks)[keep]
    masks = masks > mask_threshold if masks.is_floating_point() else masks.bool()
    labels, boxes = labels[keep], prediction["boxes"].cpu()[keep]
    if masks.shape[-2:] != canvas.shape[-2:]:
        raise ValueError(f"masks are {tuple(masks.shape[-2:])} but the image is {tuple(canvas.shape[-2:])}")
    if labels.numel() and int(labels.max()) >= len(class_set.names):
        raise ValueError(f"label {int(labels.max())} is not in class set {class_set.name!r} "
                         f"({len(class_set.names)} ids)")
    colours = [tuple(int(c) for c in class_set.palette[i]) for i in labels.tolist()]
    captions = [class_set.names[i] for i in labels.tolist()]
    if scores is not None:
        captions = [f"{name} {score:.2f}" for name, score in zip(captions, scores.cpu()[keep].tolist())]
    if len(labels):
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colours)
        canvas = draw_bounding_boxes(canvas, boxes, labels=captions, colors=colours, width=2)
    return canvas.permute(1, 2, 0).numpy().copy()


class DetectionFigure:
    """``visualizer(model, batch, path)``: one row per frame (at most 4), ground truth | detections scoring >= 0.5.

    Args:
        class_set: names and colours of the classes.
    """

    def __init__(self, class_set: ClassSet):
        self.class_set = class_set

    def __call__(self, model, batch: dict, path: Path) -> None:
        detections = model(batch)["detections"]
        rows = []
        for rgb, target, pred in list(zip(batch[RGB], batch[INSTANCES], detections))[:4]:
            rows.append(np.concatenate([draw_instances(rgb, target, self.class_set),
                                        draw_instances(rgb, pred, self.class_set)], axis=1))
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]  # frames may differ in size
        write_png(path, np.concatenate(rows, axis=0))
