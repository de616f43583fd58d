"""Mask R-CNN on a plain ViT (the ViTDet recipe): instance segmentation and object detection.

::

    rgb uint8 (B,3,H,W) -> torchvision transform (resize to min_size/max_size, pad to a multiple of 64)
        -> ViT (last block, stride 16) -> simple feature pyramid p2..p6 (strides 4..64, 256 channels)
        -> torchvision MaskRCNN: RPN on p2..p6, box and mask RoIAlign on p2..p5

The backbone is the pre-trained RGB encoder (:class:`~mask3d_vit.models.backbone.ViTBackbone`), made multi-scale by
ViTDet's :class:`~mask3d_vit.models.necks.SimpleFeaturePyramid` (scale factors 4, 2, 1, 1/2 plus a max-pooled
level). Everything after the pyramid is torchvision's Mask R-CNN, configured here.

Conventions:

- torchvision's transform only resizes and batches (mean 0, std 1 on ``[0, 1]`` colour); the backbone normalises
  with :func:`~mask3d_vit.models.vit.normalize_rgb` like every model of the package, so an exported encoder sees
  exactly the inputs it was pre-trained on.
- Batches are padded to a multiple of the coarsest pyramid stride (64), so every level is an exact downsampling
  of the one before and the ViT patch grid always fits.
- Class ids are those of the dataset's class set (``num_classes = len(class_set.names)``, id 0 = background);
  stuff classes simply never occur as targets (:mod:`mask3d_vit.data.instances`).

Example::

    model = ViTMaskRCNN.from_config(DetectorConfig(encoder="vit_tiny_patch16"), num_classes=14)
    losses = model(batch)                          # train mode: {"loss", "loss_classifier", "loss_mask", ...}
    detections = model.eval()(batch)["detections"] # per frame: boxes, labels, scores, masks (N, 1, H, W)
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from ..config import config_kwargs
from ..data.instances import INSTANCES
from ..data.sample import RGB
from .backbone import ViTBackbone, ViTHooks, build_backbone
from .necks import SimpleFeaturePyramid

__all__ = ["DetectorConfig", "ViTDetBackbone", "ViTMaskRCNN"]


@dataclass
class DetectorConfig:
    """Architecture of :class:`ViTMaskRCNN`; the ``model`` section of a detection run config.

    ``encoder``, ``img_size``, ``out_indices`` and ``drop_path_rate`` build the ViT (see
    :func:`mask3d_vit.models.backbone.build_backbone`); ``pyramid_channels``, ``scale_factors`` and ``pyramid_norm``
    the ViTDet pyramid (a max-pooled level is always added); every other field is the keyword argument of
    :class:`ViTMaskRCNN` with the same name, documented there.
    """
    encoder: str = "vit_base_patch16"
    img_size: tuple[int, int] = (480, 640)
    out_indices: tuple[int, ...] = (-1,)
    drop_path_rate: float = 0.1
    pyramid_channels: int = 256
    scale_factors: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    pyramid_norm: str = "LN"
    min_size: int = 480
    max_size: int = 640
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 1000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    box_head_dim: int = 1024
    mask_head_dim: int = 256
    score_threshold: float = 0.05
    detections_per_image: int = 100


class ViTDetBackbone(nn.Module):
    """A ViT and a simple feature pyramid as a torchvision detection backbone.

    Args:
        vit: the RGB encoder as a :class:`~mask3d_vit.models.backbone.ViTBackbone` (one out index, or one per level).
        out_channels: channels of every pyramid level.
        scale_factors: pyramid levels relative to the ViT stride, finest first; a max-pooled level follows.
        norm: norm of the pyramid convolutions.

    Attributes:
        out_channels: channels of every output map (torchvision reads it to size the RPN and RoI heads).
        strides: ``{name: stride}`` of the outputs, e.g. ``p2: 4 ... p6: 64``.
    """

    def __init__(self, *, vit: ViTBackbone, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), norm: str = "LN"):
        super().__init__()
        if len(vit.out_indices) not in (1, len(scale_factors)):
            raise ValueError(f"the ViT gives {len(vit.out_indices)} feature maps for {len(scale_factors)} pyramid "
                             f"levels; use one out index or one per level")
        self.vit = vit
        self.neck = SimpleFeaturePyramid(in_channels=vit.embed_dim, out_channels=out_channels,
                                         scale_factors=scale_factors, in_stride=vit.patch_size, norm=norm,
                                         top_block=True)
        self.out_channels = out_channels
        self.strides = dict(self.neck.strides)
        # Mixed precision of the ViT and pyramid, set by ViTMaskRCNN for each call (None = fp32).
        self.autocast_dtype: torch.dtype | None = None

    def forward(self, images: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """``images``: float (B, 3, H, W) in ``[0, 1]`` -> ``OrderedDict`` p2..p6 of float32
        (B, C, H / stride, W / stride)."""
        with torch.autocast(images.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            maps = self.vit(images)
            pyramid = self.neck(maps[0] if len(maps) == 1 else maps)
        return OrderedDict((name, x.float()) for name, x in pyramid.items())


class ViTMaskRCNN(nn.Module, ViTHooks):
    """Mask R-CNN with a ViTDet backbone, following the engine's contract: ``model(batch) -> dict``.

    Training mode: ``batch`` holds ``rgb`` (uint8 (B, 3, H, W) or a list of (3, H_i, W_i)) and ``instances`` (one
    target dict per frame, :mod:`mask3d_vit.data.instances`); returns ``loss`` (the sum) and torchvision's five
    terms (``loss_objectness``, ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``, ``loss_mask``).
    Eval mode: returns ``detections``, one dict per frame with ``boxes`` (N, 4) x0y0x1y1, ``labels`` (N,),
    ``scores`` (N,) and ``masks`` float (N, 1, H, W) probabilities, at the input image size.

    Args:
        backbone: the ViT + pyramid.
        num_classes: class ids 0..num_classes-1, 0 = background (``len(class_set.names)``).
        min_size: short side images are resized to.
        max_size: cap on the long side after resizing.
        anchor_sizes: anchor side per pyramid level, finest first (one per backbone output).
        rpn_pre_nms_top_n_train: proposals per level kept before NMS, training.
        rpn_post_nms_top_n_train: proposals per image after NMS, training.
        rpn_pre_nms_top_n_test: as above, inference.
        rpn_post_nms_top_n_test: as above, inference.
        rpn_batch_size_per_image: anchors sampled per image for the RPN loss.
        box_batch_size_per_image: proposals sampled per image for the box and mask losses.
        box_head_dim: width of the box head's two fully connected layers.
        mask_head_dim: width of the mask head's four convolutions.
        score_threshold: minimum score of a returned detection.
        detections_per_image: maximum detections returned per image.
    """

    vit_path = "detector.backbone.vit"

    def __init__(self, *, backbone: ViTDetBackbone, num_classes: int, min_size: int = 480, max_size: int = 640,
                 anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512), rpn_pre_nms_top_n_train: int = 2000,
                 rpn_post_nms_top_n_train: int = 1000, rpn_pre_nms_top_n_test: int = 1000,
                 rpn_post_nms_top_n_test: int = 1000, rpn_batch_size_per_image: int = 256,
                 box_batch_size_per_image: int = 512, box_head_dim: int = 1024, mask_head_dim: int = 256,
                 score_threshold: float = 0.05, detections_per_image: int = 100):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes={num_classes}: needs the background (0) and at least one class")
        levels = list(backbone.strides)
        if len(anchor_sizes) != len(levels):
            raise ValueError(f"anchor_sizes has {len(anchor_sizes)} entries but the pyramid has {len(levels)} "
                             f"levels ({', '.join(levels)}); give one anchor size per level")
        channels = backbone.out_channels
        anchors = AnchorGenerator(sizes=tuple((int(s),) for s in anchor_sizes),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * len(levels))
        # RoIs are pooled from every level but the max-pooled one, as in the FPN paper and ViTDet.
        box_pool = MultiScaleRoIAlign(featmap_names=levels[:-1], output_size=7, sampling_ratio=2)
        mask_pool = MultiScaleRoIAlign(featmap_names=levels[:-1], output_size=14, sampling_ratio=2)
        self.num_classes = num_classes
        self.detector = MaskRCNN(
            backbone, num_classes=None, min_size=min_size, max_size=max_size,
            image_mean=(0.0, 0.0, 0.0), image_std=(1.0, 1.0, 1.0), size_divisible=max(backbone.strides.values()),
            rpn_anchor_generator=anchors,
            rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
            rpn_batch_size_per_image=rpn_batch_size_per_image,
            box_roi_pool=box_pool, box_head=TwoMLPHead(channels * 7 * 7, box_head_dim),
            box_predictor=FastRCNNPredictor(box_head_dim, num_classes),
            box_batch_size_per_image=box_batch_size_per_image, box_score_thresh=score_threshold,
            box_detections_per_img=detections_per_image,
            mask_roi_pool=mask_pool, mask_head=MaskRCNNHeads(channels, (mask_head_dim,) * 4, 1),
            mask_predictor=MaskRCNNPredictor(mask_head_dim, mask_head_dim, num_classes))

    @classmethod
    def from_config(cls, cfg: DetectorConfig, *, num_classes: int, init_from: str | None = None) -> "ViTMaskRCNN":
        """Build from a :class:`DetectorConfig`, loading encoder weights from ``init_from`` (None = scratch)."""
        vit = build_backbone(encoder=cfg.encoder, out_indices=cfg.out_indices, img_size=cfg.img_size,
                             drop_path_rate=cfg.drop_path_rate, init_from=init_from)
        backbone = ViTDetBackbone(vit=vit, out_channels=cfg.pyramid_channels, scale_factors=cfg.scale_factors,
                                  norm=cfg.pyramid_norm)
        return cls(backbone=backbone, num_classes=num_classes, **config_kwargs(cls, cfg))

    def forward(self, batch: dict) -> dict:
        device = next(self.parameters()).device
        images = [im.to(device).float() / 255.0 for im in batch[RGB]]
        # Only the ViT and pyramid (most of the compute) follow the caller's autocast; the RPN and RoI heads run
        # in fp32 because bf16 resolves box coordinates to just 2-4 px between 256 and 1024 px.
        autocast = torch.is_autocast_enabled(device.type)
        self.detector.backbone.autocast_dtype = torch.get_autocast_dtype(device.type) if autocast else None
        with torch.autocast(device.type, enabled=False):
            if not self.training:
                return {"detections": self.detector(images)}
            if INSTANCES not in batch:
                raise KeyError("training Mask R-CNN needs batch['instances'] (build batches with "
                               "mask3d_vit.data.instances.InstanceCollate)")
            targets = [{k: v.to(device) for k, v in t.items()} for t in batch[INSTANCES]]
            for target in targets:
                self._check_target(target)
            losses = self.detector(images, targets)
        return {"loss": sum(losses.values()), **losses}

    def _check_target(self, target: dict) -> None:
        labels = target["labels"]
        if labels.numel() and (labels.min() < 1 or labels.max() >= self.num_classes):
            raise ValueError(f"target labels {labels.unique().tolist()} fall outside 1..{self.num_classes - 1}; "
                             f"the model was built for {self.num_classes} classes (background included)")

