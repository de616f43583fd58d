"""Fine-tuning models for dense RGB tasks: ViT backbone -> (simple feature pyramid) -> head, with their own loss.

Two heads share one structure for both tasks:

- ``linear``: a 1x1 conv on the last block's patch tokens (the frozen-feature probe, or a fine-tuned linear head);
- ``upernet``: ViTDet's simple feature pyramid (strides 4, 8, 16, 32, fed by four blocks) -> UperNet, with an
  optional auxiliary FCN head on the stride-16 level.

Segmentation predicts ``K`` logits for class ids ``1..K`` (channel ``c`` = id ``c + 1``) and ignores id 0;
depth predicts one channel, the natural log of depth in metres, trained with the scale-invariant log loss.
Losses are computed at 1/``loss_stride`` resolution (labels subsampled at pixel centres, logits resized to them):
at stride 4 the full-resolution upsample + cross-entropy, about 20 % of a ViT-Tiny step on CPU, disappears.

``model(batch)`` returns ``{"loss": ..., "loss_<term>": ...}`` for the engine; :meth:`DenseModel.predict` returns
class-id maps or metres at the input resolution, from the whole image or from sliding windows.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sample import DEPTH, LABEL, RGB, VALID
from .backbone import ViTBackbone, ViTHooks, build_backbone, pad_to_multiple
from .heads import FCNHead, LinearHead, UperNetHead, resize
from .necks import SimpleFeaturePyramid

TASKS = ("seg", "depth")
HEADS = ("linear", "upernet")
PYRAMID_STRIDES = (4, 8, 16, 32)


@dataclass
class DenseModelConfig:
    """The ``model`` section of a fine-tuning run; see :meth:`DenseModel.from_config` for each field. ``img_size``
    follows the run's ``data.size`` unless the recipe, an override or a saved config sets it."""
    encoder: str = "vit_tiny_patch16"
    img_size: tuple[int, int] = field(default=(128, 128), metadata={"follows": "data.size"})
    head: str = "upernet"
    out_indices: tuple[int, ...] | None = None
    freeze_backbone: bool = False
    drop_path_rate: float = 0.1
    neck_channels: int = 256
    head_channels: int = 256
    norm: str = "BN"
    dropout: float = 0.1
    aux_weight: float = 0.4
    loss_stride: int = 4
    silog_lambda: float = 0.85
    depth_prior: float = 2.5


def _window_starts(size: int, window: int, stride: int) -> list[int]:
    """Window offsets covering ``size`` pixels; the last window is flush with the border."""
    if size <= window:
        return [0]
    return sorted(set(range(0, size - window, stride)) | {size - window})


class DenseModel(nn.Module, ViTHooks, abc.ABC):
    """Backbone -> optional neck -> head (+ optional auxiliary head); subclasses define the task's loss.

    Args:
        backbone: the RGB ViT.
        head: maps the backbone maps (no neck) or the pyramid levels (with a neck) to ``(B, C_out, h, w)``.
        neck: a :class:`SimpleFeaturePyramid`, or None to feed the backbone maps to the head directly.
        aux_head: applied in training to the stride-``patch_size`` pyramid level; its loss is added with
            ``aux_weight``. Needs a neck.
        aux_weight: weight of the auxiliary loss.
        loss_stride: compute the loss on a grid of this stride (4 = 1/4 resolution; 1 = full); must divide the
            patch size.
    """

    loss_name = "main"
    vit_path = "backbone"

    def __init__(self, *, backbone: ViTBackbone, head: nn.Module, neck: SimpleFeaturePyramid | None = None,
                 aux_head: nn.Module | None = None, aux_weight: float = 0.4, loss_stride: int = 4):
        super().__init__()
        if backbone.patch_size % loss_stride:
            raise ValueError(f"loss_stride={loss_stride} must divide the patch size {backbone.patch_size}")
        if aux_head is not None:
            if neck is None:
                raise ValueError("an auxiliary head needs the feature pyramid (head='upernet')")
            level = [name for name, s in neck.strides.items() if s == backbone.patch_size]
            if not level:
                raise ValueError(f"the neck has no stride-{backbone.patch_size} level for the auxiliary head")
            self.aux_level = level[0]
        self.backbone, self.neck, self.head, self.aux_head = backbone, neck, head, aux_head
        self.aux_weight, self.loss_stride = aux_weight, loss_stride

    @classmethod
    def from_config(cls, cfg: DenseModelConfig, *, task: str, num_classes: int = 0,
                    init_from: str | None = None) -> "DenseModel":
        """Build a fine-tuning or probe model from its config: a :class:`SegmentationModel` or :class:`DepthModel`.

        Args:
            cfg: architecture. ``encoder``/``img_size``/``drop_path_rate``: the ViT (``img_size`` is the nominal size
                that loaded position embeddings are resampled to; any input size works). ``head``: "linear" or
                "upernet". ``out_indices``: blocks feeding the head (None = the last block for linear, four evenly
                spaced blocks for upernet). ``freeze_backbone``: the probe protocol. ``neck_channels``,
                ``head_channels``, ``norm``, ``dropout``: pyramid/UperNet width, norm ("BN", "LN", "none") and
                classifier dropout. ``aux_weight``: auxiliary FCN loss weight (upernet only; 0 = no auxiliary head).
                ``loss_stride``: loss resolution. ``silog_lambda``, ``depth_prior``: depth loss and initial depth
                (see :class:`DepthModel`).
            task: "seg" or "depth".
            num_classes: K for segmentation (ids 1..K).
            init_from: encoder weights (see :func:`mask3d_vit.models.backbone.build_backbone`); None = scratch.
        """
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if cfg.head not in HEADS:
            raise ValueError(f"model.head={cfg.head!r}: choose one of {', '.join(HEADS)}")
        if task == "seg" and num_classes < 1:
            raise ValueError(f"segmentation needs num_classes >= 1, got {num_classes}")
        num_outputs = num_classes if task == "seg" else 1
        num_levels = 4 if cfg.head == "upernet" else 1
        out_indices = num_levels if cfg.out_indices is None else tuple(cfg.out_indices)
        if cfg.head == "upernet" and cfg.out_indices is not None and len(cfg.out_indices) != num_levels:
            raise ValueError(f"model.out_indices={list(cfg.out_indices)}: the upernet pyramid needs {num_levels} "
                             f"blocks (finest level first)")
        backbone = build_backbone(encoder=cfg.encoder, out_indices=out_indices, img_size=cfg.img_size,
                                  drop_path_rate=cfg.drop_path_rate, init_from=init_from, frozen=cfg.freeze_backbone)
        dim = backbone.embed_dim
        neck = aux_head = None
        if cfg.head == "linear":
            head = LinearHead(in_channels=dim, num_outputs=num_outputs, num_inputs=len(backbone.out_indices))
        else:
            # Strides 4..32 whatever the patch size (UperNet's levels), so a patch-8 ViT costs no finer head.
            neck = SimpleFeaturePyramid(in_channels=dim, out_channels=cfg.neck_channels, in_stride=backbone.patch_size,
                                        scale_factors=[backbone.patch_size / s for s in PYRAMID_STRIDES], norm="LN")
            head = UperNetHead(in_channels=cfg.neck_channels, num_levels=num_levels, num_outputs=num_outputs,
                               channels=cfg.head_channels, norm=cfg.norm, dropout=cfg.dropout)
            if cfg.aux_weight > 0:
                aux_head = FCNHead(in_channels=cfg.neck_channels, num_outputs=num_outputs, channels=cfg.head_channels,
                                   norm=cfg.norm, dropout=cfg.dropout)
        common = dict(backbone=backbone, head=head, neck=neck, aux_head=aux_head, aux_weight=cfg.aux_weight,
                      loss_stride=cfg.loss_stride)
        if task == "seg":
            return SegmentationModel(num_classes=num_classes, **common)
        return DepthModel(silog_lambda=cfg.silog_lambda, depth_prior=cfg.depth_prior, **common)

    # -- features and raw outputs ------------------------------------------------------------------------------
    def forward_raw(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``rgb``: uint8 ``(B, 3, H, W)`` -> (main output, auxiliary output or None in eval), each
        ``(B, C_out, h, w)`` covering the image padded to a multiple of the patch size."""
        maps = self.backbone(rgb)
        if self.neck is None:
            return self.head(maps), None
        pyramid = self.neck(maps)
        aux = self.aux_head(pyramid[self.aux_level]) if self.aux_head is not None and self.training else None
        return self.head(list(pyramid.values())), aux

    def _image_output(self, rgb: torch.Tensor) -> torch.Tensor:
        """Main output bilinearly resized to the input: float32 ``(B, C_out, H, W)``."""
        h, w = rgb.shape[-2:]
        p = self.backbone.patch_size
        out, _ = self.forward_raw(rgb)
        return resize(out.float(), (math.ceil(h / p) * p, math.ceil(w / p) * p))[..., :h, :w]

    def infer(self, rgb: torch.Tensor, *, window: int | None = None, stride: int | None = None) -> torch.Tensor:
        """Raw outputs at the input resolution, float32 ``(B, C_out, H, W)``.

        Args:
            rgb: uint8 ``(B, 3, H, W)``.
            window: None or 0 = the whole image at once; otherwise square windows of this side (clipped to the
                image), whose overlapping outputs are averaged (sliding-window inference, as for Cityscapes).
            stride: window step; defaults to 2/3 of the window (1/3 overlap).
        """
        if not window:
            return self._image_output(rgb)
        h, w = rgb.shape[-2:]
        wh, ww = min(window, h), min(window, w)
        stride = stride or max(1, window * 2 // 3)
        total, count = None, torch.zeros(1, 1, h, w, device=rgb.device)
        for top in _window_starts(h, wh, stride):
            for left in _window_starts(w, ww, stride):
                out = self._image_output(rgb[..., top:top + wh, left:left + ww])
                if total is None:
                    total = out.new_zeros(out.shape[0], out.shape[1], h, w)
                total[..., top:top + wh, left:left + ww] += out
                count[..., top:top + wh, left:left + ww] += 1
        return total / count

    # -- training ----------------------------------------------------------------------------------------------
    def loss_grid(self, x: torch.Tensor, pad_value: float = 0) -> torch.Tensor:
        """A per-pixel target ``(B, ..., H, W)`` padded like the image, then sampled at the centre pixel of each
        ``loss_stride`` cell: ``(B, ..., ceil(H/p)*p/s, ceil(W/p)*p/s)``."""
        s = self.loss_stride
        return pad_to_multiple(x, self.backbone.patch_size, pad_value)[..., s // 2::s, s // 2::s]

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training step: ``batch`` as in :mod:`mask3d_vit.data.sample` -> ``{"loss", "loss_<main>"[, "loss_aux"]}``."""
        frames, least = batch[RGB].shape[0], getattr(self.head, "min_batch", 1)
        if self.training and frames < least:
            raise ValueError(f"training batches of {frames} frame per process, but the head's BatchNorm "
                             f"(model.norm=BN) normalises its globally pooled context over the batch and needs {least} "
                             f"or more: set model.norm=LN (any batch size) or train.batch_size >= {least} per process")
        main, aux = self.forward_raw(batch[RGB])
        target = self.loss_target(batch)
        out = {f"loss_{self.loss_name}": self.criterion(main, target)}
        loss = out[f"loss_{self.loss_name}"]
        if aux is not None:
            out["loss_aux"] = self.criterion(aux, target)
            loss = loss + self.aux_weight * out["loss_aux"]
        out["loss"] = loss
        return out

    @abc.abstractmethod
    def loss_target(self, batch: dict):
        """The task's targets on the loss grid (see :meth:`loss_grid`)."""

    @abc.abstractmethod
    def criterion(self, output: torch.Tensor, target) -> torch.Tensor:
        """Scalar loss of a raw output ``(B, C_out, h, w)`` (any resolution) against :meth:`loss_target`."""

    @abc.abstractmethod
    def predict(self, rgb: torch.Tensor, *, window: int | None = None, stride: int | None = None) -> torch.Tensor:
        """The task's prediction at the input resolution (see :meth:`infer` for the arguments)."""


class SegmentationModel(DenseModel):
    """Semantic segmentation: cross-entropy over ids ``1..num_classes`` (id 0 ignored).

    Args:
        num_classes: K real classes; the head must output K channels.
        **kwargs: see :class:`DenseModel`.
    """

    loss_name = "ce"

    def __init__(self, *, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def loss_target(self, batch: dict) -> torch.Tensor:
        """``(B, h, w)`` int64 channel index, -1 where unlabeled (or padding)."""
        if LABEL not in batch:
            raise ValueError("segmentation training needs 'label' maps in the batch; build the dataset with labels")
        return self.loss_grid(batch[LABEL]) - 1

    def criterion(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = resize(output.float(), target.shape[-2:])
        # Sum / count instead of the mean: a crop with no labelled pixel gives 0, not NaN.
        total = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum")
        return total / (target >= 0).sum().clamp(min=1)

    @torch.no_grad()
    def predict(self, rgb: torch.Tensor, *, window: int | None = None, stride: int | None = None) -> torch.Tensor:
        """``rgb``: uint8 ``(B, 3, H, W)`` -> int64 ``(B, H, W)`` class ids in ``1..num_classes``."""
        return self.infer(rgb, window=window, stride=stride).argmax(1) + 1


class DepthModel(DenseModel):
    """Monocular depth: one log-depth channel, trained with the scale-invariant log loss (Eigen et al. 2014) on
    valid pixels, ``sqrt(mean(d^2) - lambda * mean(d)^2)`` with ``d = log(pred) - log(gt)``.

    The head predicts log-depth relative to ``depth_prior``: with the scale term weighted only ``1 - lambda`` and
    Adam moving a bias by about one learning rate per step, a head starting at log(1 m) would need thousands of steps
    to find the metric scale of indoor scenes, which a short probe never gets.

    Args:
        silog_lambda: 0 = plain RMSE in log space; 1 = fully scale-invariant; 0.85 is the usual compromise.
        depth_prior: the depth (metres) an untrained head predicts; the dataset's typical depth.
        **kwargs: see :class:`DenseModel`.
    """

    loss_name = "silog"

    def __init__(self, *, silog_lambda: float = 0.85, depth_prior: float = 2.5, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= silog_lambda <= 1.0:
            raise ValueError(f"silog_lambda must be in [0, 1], got {silog_lambda}")
        if not depth_prior > 0:
            raise ValueError(f"depth_prior must be a positive depth in metres, got {depth_prior}")
        self.silog_lambda = silog_lambda
        self.log_prior = math.log(depth_prior)

    def loss_target(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-depth, valid), each ``(B, 1, h, w)``; log-depth is 0 where invalid."""
        valid = self.loss_grid(batch[VALID], False) & (self.loss_grid(batch[DEPTH]) > 0)
        log_depth = torch.where(valid, self.loss_grid(batch[DEPTH]).clamp(min=1e-6).log(), 0.0)
        return log_depth, valid

    def criterion(self, output: torch.Tensor, target: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        log_depth, valid = target
        d = torch.where(valid, resize(output.float(), log_depth.shape[-2:]) + self.log_prior - log_depth, 0.0)
        n = valid.sum().clamp(min=1)
        mean, mean_sq = d.sum() / n, (d ** 2).sum() / n
        # The clamp keeps sqrt's gradient finite when the prediction is exact.
        return (mean_sq - self.silog_lambda * mean ** 2).clamp(min=1e-8).sqrt()

    @torch.no_grad()
    def predict(self, rgb: torch.Tensor, *, window: int | None = None, stride: int | None = None) -> torch.Tensor:
        """``rgb``: uint8 ``(B, 3, H, W)`` -> float32 ``(B, 1, H, W)`` depth in metres."""
        return (self.infer(rgb, window=window, stride=stride) + self.log_prior).exp()
