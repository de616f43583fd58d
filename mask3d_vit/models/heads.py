"""Dense prediction heads: a linear probe, UperNet (pyramid pooling + FPN) and an auxiliary FCN.

Every head maps backbone or pyramid features to ``num_outputs`` channels at the resolution of its finest input;
the dense model (:mod:`mask3d_vit.models.dense`) resizes that to the loss or image resolution. Segmentation uses
``num_outputs = num_classes`` logits, depth uses one channel (log-depth), so a depth head is the same UperNet or
linear head with a regression output.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .necks import conv_norm_act


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, h, w)`` to ``size`` (no-op when it already has that size)."""
    size = tuple(size)
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class LinearHead(nn.Module):
    """A per-patch linear layer on (concatenated) ViT feature maps: the classic frozen-feature probe.

    Args:
        in_channels: channels of each input map (the ViT embedding dim).
        num_outputs: output channels (classes, or 1 for depth).
        num_inputs: how many maps (blocks) are concatenated along channels.
        batch_norm: normalise the features first with a non-affine BatchNorm (MAE's linear probe), which makes the
            probe insensitive to the scale of features from differently pre-trained backbones.
    """

    def __init__(self, *, in_channels: int, num_outputs: int, num_inputs: int = 1, batch_norm: bool = True):
        super().__init__()
        channels = in_channels * num_inputs
        self.num_inputs = num_inputs
        self.norm = nn.BatchNorm2d(channels, affine=False, eps=1e-6) if batch_norm else nn.Identity()
        self.proj = nn.Conv2d(channels, num_outputs, kernel_size=1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: ``num_inputs`` maps ``(B, C, h, w)`` -> ``(B, num_outputs, h, w)``."""
        if len(features) != self.num_inputs:
            raise ValueError(f"LinearHead expects {self.num_inputs} feature maps, got {len(features)}")
        return self.proj(self.norm(torch.cat(list(features), dim=1)))


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: context pooled at several grid sizes, upsampled and concatenated to the input.

    Args:
        in_channels: input channels.
        channels: channels of each pooled branch.
        pool_scales: output grid size of each branch's adaptive average pool.
        norm: "BN", "LN" or "none".
    """

    def __init__(self, *, in_channels: int, channels: int, pool_scales: Sequence[int], norm: str):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_norm_act(in_channels, channels, kernel_size=1, norm=norm))
            for s in pool_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, C + len(pool_scales) * channels, h, w)``."""
        return torch.cat([x] + [resize(branch(x), x.shape[-2:]) for branch in self.branches], dim=1)


class UperNetHead(nn.Module):
    """UperNet (Xiao et al., ECCV 2018) as used by BEiT/MAE for ViT segmentation: PPM on the coarsest level, a
    top-down FPN, and all levels fused at the finest resolution.

    Args:
        in_channels: channels of every input level (the neck's ``out_channels``).
        num_levels: number of pyramid levels, finest first.
        num_outputs: output channels (classes, or 1 for depth).
        channels: internal width (mmseg uses 512 for ViT-B; 256 suffices for small backbones).
        pool_scales: pyramid pooling grid sizes.
        norm: "BN" (the reference recipe; convert to SyncBatchNorm for multi-GPU), "LN" or "none".
        dropout: dropout before the final 1x1 classifier.
    """

    def __init__(self, *, in_channels: int, num_levels: int, num_outputs: int, channels: int = 256,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), norm: str = "BN", dropout: float = 0.1):
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"UperNetHead needs at least one level, got num_levels={num_levels}")
        self.num_levels = num_levels
        # A BatchNorm after the 1x1 global pool sees one value per channel and frame: training needs 2+ frames.
        self.min_batch = 2 if norm == "BN" and 1 in pool_scales else 1
        self.psp = nn.Sequential(
            PyramidPooling(in_channels=in_channels, channels=channels, pool_scales=pool_scales, norm=norm),
            conv_norm_act(in_channels + len(pool_scales) * channels, channels, kernel_size=3, norm=norm))
        self.lateral = nn.ModuleList(
            conv_norm_act(in_channels, channels, kernel_size=1, norm=norm) for _ in range(num_levels - 1))
        self.fpn = nn.ModuleList(
            conv_norm_act(channels, channels, kernel_size=3, norm=norm) for _ in range(num_levels - 1))
        self.fuse = conv_norm_act(num_levels * channels, channels, kernel_size=3, norm=norm)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_outputs, kernel_size=1))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: ``num_levels`` maps ``(B, in_channels, h_i, w_i)``, finest first ->
        ``(B, num_outputs, h_0, w_0)``."""
        if len(features) != self.num_levels:
            raise ValueError(f"UperNetHead expects {self.num_levels} pyramid levels, got {len(features)}")
        laterals = [conv(f) for conv, f in zip(self.lateral, features[:-1])] + [self.psp(features[-1])]
        for i in range(self.num_levels - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1])] + [laterals[-1]]
        size = outs[0].shape[-2:]
        return self.classifier(self.fuse(torch.cat([resize(x, size) for x in outs], dim=1)))


class FCNHead(nn.Module):
    """The auxiliary head of mmseg's UperNet recipes: a few 3x3 convs and a classifier on one stride-16 level.

    Its loss (weight ~0.4) adds a shorter gradient path to the middle of the backbone; it is unused at inference.

    Args:
        in_channels: input channels.
        num_outputs: output channels.
        channels: hidden width.
        num_convs: number of 3x3 conv-norm-ReLU layers.
        norm: "BN", "LN" or "none".
        dropout: dropout before the classifier.
    """

    def __init__(self, *, in_channels: int, num_outputs: int, channels: int = 256, num_convs: int = 1,
                 norm: str = "BN", dropout: float = 0.1):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"FCNHead needs num_convs >= 1, got {num_convs}")
        convs = [conv_norm_act(in_channels if i == 0 else channels, channels, kernel_size=3, norm=norm)
                 for i in range(num_convs)]
        self.convs = nn.Sequential(*convs)
        self.classifier = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(channels, num_outputs, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, h, w)`` -> ``(B, num_outputs, h, w)``."""
        return self.classifier(self.convs(x))
