"""ViTDet's simple feature pyramid: a plain ViT's single-stride tokens -> a multi-scale feature pyramid.

Li et al., "Exploring Plain Vision Transformer Backbones for Object Detection" (ECCV 2022) showed that a plain ViT
needs no hierarchical backbone for dense tasks: a few transposed convolutions and a max-pool on its stride-16
feature map give strides 4, 8, 16 and 32. BEiT/MAE segmentation recipes do the same but feed each scale from a
different block (e.g. blocks 4, 6, 8, 12 of ViT-B); :class:`SimpleFeaturePyramid` accepts either form.

Example::

    neck = SimpleFeaturePyramid(in_channels=192, out_channels=256)
    pyramid = neck(features)          # features: (B, 192, H/16, W/16), or a list of 4 such maps
    pyramid["p2"].shape               # (B, 256, H/4, W/4); also p3 (H/8), p4 (H/16), p5 (H/32)
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn
from timm.layers import LayerNorm2d

NORMS = ("LN", "BN", "none")


def norm_2d(norm: str, channels: int) -> nn.Module:
    """A channel norm for ``(B, C, H, W)`` maps by name: "LN" (per-pixel LayerNorm, ViTDet's choice), "BN", "none"."""
    if norm == "LN":
        return LayerNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def conv_norm_act(in_channels: int, out_channels: int, *, kernel_size: int, norm: str,
                  act: bool = True) -> nn.Sequential:
    """Conv (same padding; no bias when a norm follows) -> norm -> optional ReLU: the unit of pyramid/FPN heads."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm == "none"),
              norm_2d(norm, out_channels)]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _rescale(channels: int, scale: float, norm: str) -> tuple[nn.Module, int]:
    """The resampling stage for one pyramid level; returns it with its output channel count."""
    if scale == 4.0:
        # Two 2x deconvolutions halve the width twice, as in ViTDet, so stride 4 stays cheap.
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2),
            norm_2d(norm, channels // 2),
            nn.GELU(),
            nn.ConvTranspose2d(channels // 2, channels // 4, kernel_size=2, stride=2),
        ), channels // 4
    if scale == 2.0:
        return nn.ConvTranspose2d(channels, channels // 2, kernel_size=2, stride=2), channels // 2
    if scale == 1.0:
        return nn.Identity(), channels
    if scale in (0.5, 0.25):
        k = round(1 / scale)
        return nn.MaxPool2d(kernel_size=k, stride=k), channels
    raise ValueError(f"scale factor {scale} is not supported; use values from (4.0, 2.0, 1.0, 0.5, 0.25)")


class SimpleFeaturePyramid(nn.Module):
    """Multi-scale features from a plain ViT (ViTDet).

    Each level resamples its input (deconvolutions up, max-pool down), then projects it with a 1x1 and a 3x3 conv
    (each followed by ``norm``) to ``out_channels``. Levels are named ``p<k>`` for stride ``2**k`` (detectron2's
    convention), in increasing stride order.

    Args:
        in_channels: channels of the ViT feature map(s) (the embedding dim).
        out_channels: channels of every pyramid level.
        scale_factors: resampling factor per level relative to the input stride; a subset of (4, 2, 1, 0.5, 0.25).
        in_stride: stride of the input feature map(s) in pixels (the patch size).
        norm: "LN", "BN" or "none" after each projection conv.
        top_block: add a level ``p<k+1>`` after the coarsest by stride-2 subsampling (ViTDet's LastLevelMaxPool,
            used by detection RPNs); its channels equal ``out_channels``.

    Attributes:
        out_channels: channels of every level.
        strides: ``{name: stride}`` of the outputs, in output order.
    """

    def __init__(self, *, in_channels: int, out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5), in_stride: int = 16, norm: str = "LN",
                 top_block: bool = False):
        super().__init__()
        scale_factors = [float(s) for s in scale_factors]
        if not scale_factors or sorted(scale_factors, reverse=True) != scale_factors or \
                len(set(scale_factors)) != len(scale_factors):
            raise ValueError(f"scale_factors must be distinct and decreasing (finest level first), got {scale_factors}")
        if in_channels % 4:
            raise ValueError(f"in_channels={in_channels} must be divisible by 4 for the stride-4 deconvolutions")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = tuple(scale_factors)
        self.top_block = top_block
        self.strides: dict[str, int] = OrderedDict()
        self.rescale = nn.ModuleList()
        self.project = nn.ModuleList()
        for scale in scale_factors:
            rescale, channels = _rescale(in_channels, scale, norm)
            self.rescale.append(rescale)
            self.project.append(nn.Sequential(
                conv_norm_act(channels, out_channels, kernel_size=1, norm=norm, act=False),
                conv_norm_act(out_channels, out_channels, kernel_size=3, norm=norm, act=False),
            ))
            stride = in_stride / scale
            if stride != int(stride) or (int(stride) & (int(stride) - 1)):
                raise ValueError(f"in_stride={in_stride} with scale {scale} gives stride {stride}, not a power of 2")
            self.strides[f"p{int(math.log2(stride))}"] = int(stride)
        if top_block:
            last = int(math.log2(next(reversed(self.strides.values()))))
            self.strides[f"p{last + 1}"] = 2 ** (last + 1)

    @property
    def num_inputs(self) -> int:
        """How many feature maps :meth:`forward` accepts as a list (one per level); a single map is also accepted."""
        return len(self.scale_factors)

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
        """Build the pyramid.

        Args:
            features: one ``(B, C, h, w)`` map shared by all levels (ViTDet), or a sequence of ``num_inputs`` such
                maps, one per level in finest-first order (BEiT/MAE segmentation: earlier blocks feed finer levels).

        Returns:
            ``OrderedDict`` name -> ``(B, out_channels, h * scale, w * scale)``, names as in :attr:`strides`.
        """
        if isinstance(features, torch.Tensor):
            features = [features] * self.num_inputs
        elif len(features) != self.num_inputs:
            raise ValueError(f"SimpleFeaturePyramid has {self.num_inputs} levels but got {len(features)} feature "
                             f"maps; pass one map or one per level")
        names = list(self.strides)
        out = OrderedDict()
        for name, x, rescale, project in zip(names, features, self.rescale, self.project):
            if x.ndim != 4 or x.shape[1] != self.in_channels:
                raise ValueError(f"expected (B, {self.in_channels}, h, w) features, got shape {tuple(x.shape)}")
            out[name] = project(rescale(x))
        if self.top_block:
            # kernel 1, stride 2: plain subsampling, exactly detectron2's LastLevelMaxPool.
            out[names[-1]] = nn.functional.max_pool2d(out[names[-2]], kernel_size=1, stride=2)
        return out
