"""``mask3d-vit predict``: run a fine-tuned segmentation, depth or detection model on images, write PNGs.

::

    mask3d-vit predict --ckpt runs/seg --image room.jpg --out room_seg.png       # class overlay + legend
    mask3d-vit predict --ckpt runs/depth --image room.jpg --out room_depth.png   # coloured depth + colour bar (m)
    mask3d-vit predict --ckpt runs/det --image room.jpg --out room_det.png --score-threshold 0.3  # boxes and masks
    mask3d-vit predict --ckpt runs/seg --image photos/ --out preds/              # every image of a folder
    mask3d-vit predict --ckpt runs/seg --image a.jpg b.jpg --out preds/ --raw-out ids/

Segmentation and depth models see the image at their training resolution (``data.size`` of the run): resized to
it when the aspect ratios agree, otherwise scaled to the same pixel scale, aspect kept, and covered by sliding
windows of the training size; the prediction is resized back to the image. ``--size H W`` picks another size,
``--native`` the image's own. Mask R-CNN resizes inside the model (``model.min_size`` / ``max_size``). Each run
prints what it did.

Outputs: with one image, ``--out`` may name the PNG; otherwise it is a folder receiving ``<stem>_<task>.png`` per
input. ``--raw-out`` (a file, or a folder of ``<stem>_<task>_raw.png``) also writes the raw prediction: class ids as
an 8-bit PNG, or depth in millimetres as a 16-bit PNG. Segmentation PNGs carry a legend of the classes present,
depth PNGs a colour bar in metres, both beside the unscaled image, their text scaled with the image's height.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ..data.classes import get_class_set
from ..io import write_png
from ..models.dense import DenseModel
from ..viz.detection import draw_instances
from ..viz.panels import (attach_panel, colorbar_panel, colorize_depth, depth_range, legend_panel, overlay_labels,
                          text_size)
from .detection import run_class_set
from .registry import TASKS
from .train import restore

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Aspect ratios closer than this are resized straight to the training size (the distortion is invisible).
ASPECT_TOLERANCE = 0.02


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


def list_images(paths: list[str | Path]) -> list[Path]:
    """``--image`` arguments -> image files: files as given, folders expanded to their images (sorted)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise FileNotFoundError(f"--image {path}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        elif not path.exists():
            raise FileNotFoundError(f"--image {path}: no such file or folder")
        else:
            found.append(path)
    return found


def output_paths(images: list[Path], out: Path, raw_out: Path | None, task: str
                 ) -> list[tuple[Path, Path | None]]:
    """Where each image's PNG (and raw PNG) goes: ``out`` itself for one image and a ``.png`` name, else
    ``out/<stem>_<task>.png`` (and ``raw_out/<stem>_<task>_raw.png``)."""
    if len(images) == 1 and out.suffix.lower() == ".png":
        return [(out, raw_out)]
    for flag, path in (("--out", out), ("--raw-out", raw_out)):
        if path is not None and path.suffix:
            raise ValueError(f"{flag} {path}: with {len(images)} images it must be a folder (outputs are named "
                             f"<image name>_{task}.png)")
    stems = [p.stem for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ValueError(f"--image: several inputs are named {', '.join(twice)}; their outputs would overwrite "
                         f"each other, predict them in separate calls")
    return [(out / f"{s}_{task}.png", raw_out / f"{s}_{task}_raw.png" if raw_out else None) for s in stems]


@dataclass
class Plan:
    """How an image meets a dense model: resized to ``size`` (None = as it is), then ``window`` (0 = whole)."""
    size: tuple[int, int] | None
    window: int
    note: str


def plan_input(image_hw: tuple[int, int], train_hw: tuple[int, int], *, size: tuple[int, int] | None = None,
               native: bool = False, window: int = 0) -> Plan:
    """Choose the resolution a dense model sees an image at.

    Args:
        image_hw: the image's ``(H, W)``.
        train_hw: the run's training resolution (``data.size``).
        size: an explicit ``(h, w)`` to resize to (``--size``); wins over the default.
        native: run at ``image_hw`` (``--native``).
        window: an explicit sliding-window side (``--window``; 0 = the plan's choice).

    Returns:
        the :class:`Plan`, with a sentence saying what it does.
    """
    h, w = image_hw
    th, tw = train_hw
    trained = f"the model trained at {th}x{tw}"
    if native or size is not None:
        target = None if native or tuple(size) == (h, w) else tuple(size)
        shown = f"{h}x{w}, its own size" if target is None else f"{target[0]}x{target[1]} (--size)"
        return Plan(target, window, f"ran at {shown}; {trained}" + (f"; {window}-px windows" if window else ""))
    if (h, w) == (th, tw):
        return Plan(None, window, f"ran at {h}x{w}, the model's training size")
    if abs((h / w) / (th / tw) - 1) <= ASPECT_TOLERANCE:
        return Plan((th, tw), window, f"resized {h}x{w} -> {th}x{tw} ({trained}), prediction resized back")
    # Another aspect ratio: keep it, at the training pixel scale (as evaluation's centre crop has it), and cover
    # the image with windows of the training size.
    scale = max(th / h, tw / w)
    target = (max(th, round(h * scale)), max(tw, round(w * scale)))
    window = window or max(th, tw)
    return Plan(target, window, f"resized {h}x{w} -> {target[0]}x{target[1]} (the training scale of {trained}, aspect "
                                f"kept), {window}-px sliding windows, prediction resized back")


@torch.no_grad()
def predict_image(model: DenseModel, rgb: torch.Tensor, *, size: tuple[int, int] | None = None,
                  window: int | None = None) -> torch.Tensor:
    """Predict on one image, returning a map at its resolution.

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


def _predict_dense(model, cfg, ckpt: Path, args: argparse.Namespace, images: list[Path], draw) -> None:
    """Predict every image at the resolution :func:`plan_input` chooses; ``draw(image, pred, cfg, args)`` ->
    (PNG array, raw array, what was shown) renders one prediction."""
    print(f"model {ckpt} ({cfg.task})", flush=True)
    for image_path, (out, raw_out) in zip(images, output_paths(images, args.out, args.raw_out, cfg.task)):
        rgb = read_image(image_path)
        plan = plan_input(tuple(rgb.shape[-2:]), tuple(cfg.data.size), size=args.size, native=args.native,
                          window=args.window)
        pred = predict_image(model, rgb, size=plan.size, window=plan.window or None)
        png, raw, shown = draw(rgb[0].permute(1, 2, 0).numpy(), pred.numpy(), cfg, args)
        write_png(out, png)
        if raw_out:
            write_png(raw_out, raw)
        print(f"{image_path} -> {out}" + (f" (+ {raw_out})" if raw_out else "") + f": {shown}; {plan.note}",
              flush=True)


def _draw_seg(image: np.ndarray, ids: np.ndarray, cfg, args: argparse.Namespace
              ) -> tuple[np.ndarray, np.ndarray, str]:
    """Class overlay + legend of the classes present; raw = 8-bit class ids."""
    class_set = get_class_set(cfg.class_set)
    present = [i for i in np.unique(ids) if i > 0]
    legend = legend_panel([(class_set.names[i], class_set.palette[i]) for i in present], size=text_size(len(image)))
    png = attach_panel(overlay_labels(image, ids, class_set.palette, alpha=args.alpha), legend)
    return png, ids.astype(np.uint8), f"{len(present)} classes"


def _draw_depth(image: np.ndarray, depth: np.ndarray, cfg, args: argparse.Namespace
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """Coloured depth + colour bar in metres; raw = 16-bit millimetres."""
    lo, hi = depth_range(depth)
    png = attach_panel(colorize_depth(depth, vmin=lo, vmax=hi), colorbar_panel(depth.shape[0], lo, hi))
    raw = np.clip(np.round(depth * 1000), 0, 65535).astype(np.uint16)
    return png, raw, f"depth {lo:.2f}-{hi:.2f} m (2-98 %)"


def predict_seg(model, cfg, ckpt: Path, args: argparse.Namespace, images: list[Path]) -> None:
    """``predict`` of a segmentation run: class overlays with a legend (``--raw-out``: class ids)."""
    _predict_dense(model, cfg, ckpt, args, images, _draw_seg)


def predict_depth(model, cfg, ckpt: Path, args: argparse.Namespace, images: list[Path]) -> None:
    """``predict`` of a depth run: coloured depth with a colour bar (``--raw-out``: millimetres)."""
    _predict_dense(model, cfg, ckpt, args, images, _draw_depth)


@torch.no_grad()
def predict_det(model, cfg, ckpt: Path, args: argparse.Namespace, images: list[Path]) -> None:
    """``predict`` of a detection run: boxes, masks and captions of instances scoring >= ``--score-threshold``."""
    if args.raw_out is not None:
        raise ValueError("--raw-out: a detection model has no raw map to write; its PNG shows boxes and masks")
    if not 0 <= args.score_threshold <= 1:
        raise ValueError(f"--score-threshold {args.score_threshold}: scores lie in [0, 1]")
    class_set = run_class_set(cfg)
    print(f"model {ckpt} (det); Mask R-CNN resizes each image to min_size={cfg.model.min_size} / "
          f"max_size={cfg.model.max_size} inside the model; drawing instances scoring >= {args.score_threshold}",
          flush=True)
    for image_path, (out, _) in zip(images, output_paths(images, args.out, None, "det")):
        rgb = read_image(image_path)
        prediction = model({"rgb": rgb})["detections"][0]
        scores = prediction["scores"]
        kept = int((scores >= args.score_threshold).sum())
        write_png(out, draw_instances(rgb[0].permute(1, 2, 0).numpy(), prediction, class_set,
                                      score_threshold=args.score_threshold, alpha=args.alpha))
        best = f", best score {float(scores.max()):.2f}" if len(scores) else ""
        hint = "; lower --score-threshold to draw some" if len(scores) and not kept else ""
        print(f"{image_path} -> {out}: drew {kept} of {len(scores)} instances{best}{hint}", flush=True)


def _main(args: argparse.Namespace) -> None:
    images = list_images(args.image)
    task, model, cfg, ckpt = restore(args.ckpt)  # the checkpoint is read once; its config names the task
    if task.predict is None:
        predictable = ", ".join(t.name for t in TASKS.values() if t.predict is not None)
        raise ValueError(f"--ckpt {args.ckpt}: a {task.name!r} run; predict runs fine-tuned models ({predictable})")
    task.part("predict")(model, cfg, ckpt, args, images)
