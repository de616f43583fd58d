"""``mask3d-vit predict``: run a fine-tuned segmentation, depth or detection model on one image, write a PNG.

::

    mask3d-vit predict --ckpt runs/seg_m3d --image room.jpg --out room_seg.png      # colour overlay of the classes
    mask3d-vit predict --ckpt runs/depth_m3d --image room.jpg --out room_depth.png  # coloured depth map
    mask3d-vit predict --ckpt runs/seg_m3d --image room.jpg --out a.png --size 240 320 --raw-out ids.png
    mask3d-vit predict --ckpt runs/det_m3d --image room.jpg --out room_det.png     # boxes and masks (Mask R-CNN)

The image is processed at its own resolution unless ``--size`` resizes it first (predictions are resized back).
``--raw-out`` also writes the raw prediction: class ids as an 8-bit PNG, or depth in millimetres as a 16-bit PNG.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..data.classes import get_class_set
from ..io import write_png
from ..models.dense import DenseModel
from ..viz import colorize_depth, overlay_labels
from ..engine.checkpoint import load_latest
from .finetune import load_dense_model


def read_image(path: str | Path) -> torch.Tensor:
    """An image file -> uint8 ``(1, 3, H, W)`` RGB (alpha and palettes are converted)."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"--image {path}: no such file") from None
    except UnidentifiedImageError:
        raise ValueError(f"--image {path}: not an image file Pillow can read") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None]


@torch.no_grad()
def predict_image(model: DenseModel, rgb: torch.Tensor, *, size: tuple[int, int] | None = None,
                  window: int | None = None) -> torch.Tensor:
    """Predict on one image at its resolution.

    Args:
        model: a fine-tuned :class:`~mask3d_vit.models.dense.SegmentationModel` or ``DepthModel`` in eval mode.
        rgb: uint8 ``(1, 3, H, W)``.
        size: resize the image to ``(h, w)`` before the model and the prediction back to ``(H, W)`` after
            (nearest for class ids, bilinear for depth); None = run at ``(H, W)``.
        window: sliding-window side in pixels (None = whole image).

    Returns:
        int64 ``(H, W)`` class ids, or float32 ``(H, W)`` depth in metres.
    """
    h, w = rgb.shape[-2:]
    x = rgb if size is None else F.interpolate(rgb.float(), size=size, mode="bilinear", antialias=True,
                                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    pred = model.predict(x, window=window)
    if pred.ndim == 3:  # class ids (B, H, W)
        return F.interpolate(pred[:, None].float(), size=(h, w), mode="nearest-exact")[0, 0].long()
    return F.interpolate(pred, size=(h, w), mode="bilinear", align_corners=False)[0, 0]


def _main(args: argparse.Namespace) -> None:
    if load_latest(args.ckpt)[1]["config"].get("task") == "det":
        return _detect(args)
    model, cfg, ckpt = load_dense_model(args.ckpt)
    rgb = read_image(args.image)
    pred = predict_image(model, rgb, size=tuple(args.size) if args.size else None, window=args.window or None)
    image = rgb[0].permute(1, 2, 0).numpy()
    if cfg.task == "seg":
        ids = pred.numpy()
        write_png(args.out, overlay_labels(image, ids, get_class_set(cfg.class_set).palette, alpha=args.alpha))
        raw = ids.astype(np.uint8)
    else:
        depth = pred.numpy()
        write_png(args.out, colorize_depth(depth))
        raw = np.clip(np.round(depth * 1000), 0, 65535).astype(np.uint16)
    if args.raw_out:
        write_png(args.raw_out, raw)
    print(f"{args.image} -> {args.out} ({cfg.task}, model {ckpt})", flush=True)


@torch.no_grad()
def _detect(args: argparse.Namespace) -> None:
    from ..models.detection import draw_instances
    from .detection import load_detection_model, run_class_set
    model, cfg, ckpt = load_detection_model(args.ckpt)
    rgb = read_image(args.image)
    prediction = model({"rgb": rgb})["detections"][0]
    write_png(args.out, draw_instances(rgb[0].permute(1, 2, 0).numpy(), prediction, run_class_set(cfg),
                                       alpha=args.alpha))
    print(f"{args.image} -> {args.out} (det: {len(prediction['boxes'])} instances, model {ckpt})", flush=True)
