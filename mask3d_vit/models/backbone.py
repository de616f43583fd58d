"""The RGB ViT as a multi-level dense backbone: ``uint8`` images in, stride-``patch`` feature maps out.

Features come from timm's ``forward_intermediates`` (blocks chosen by ``out_indices``); blocks past the last one
used, the final norm and the classifier are pruned, so DDP never sees unused parameters. Any input size works: the
image is padded to a multiple of the patch size and the encoder resamples its position embeddings to the grid.

Example::

    backbone = build_backbone(encoder="vit_tiny_patch16", out_indices=(2, 5, 8, 11), init_from="runs/m3d")
    maps = backbone(batch["rgb"])      # 4 x (B, 192, ceil(H/16), ceil(W/16))
"""
from __future__ import annotations

import logging
import re
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .vit import AttentionBackendHook, build_encoder, normalize_rgb
from .weights import load_encoder_weights

logger = logging.getLogger("mask3d_vit.models")


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float = 0.0) -> torch.Tensor:
    """Pad the last two dims of ``x`` on the bottom/right up to multiples of ``multiple``.

    Images are padded after normalisation (0 = the mean colour); labels with the ignore id, validity with False.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not ph and not pw:
        return x
    if x.dtype == torch.bool:
        return F.pad(x.to(torch.uint8), (0, pw, 0, ph), value=int(value)).bool()
    return F.pad(x, (0, pw, 0, ph), value=value)


def prefix_group_matcher(matcher: dict, prefix: str) -> dict:
    """Re-anchor a timm ``group_matcher()`` dict under a submodule name, e.g. ``"backbone.encoder."``.

    timm matches parameter names with ``re.match``, so each pattern becomes ``^<prefix>(?:<pattern>)``; the
    ordinal suffixes (e.g. ``(99999,)`` for the final norm) are kept.
    """
    head = "^" + re.escape(prefix)

    def anchor(pattern: str) -> str:
        return f"{head}(?:{pattern.removeprefix('^')})"

    out = {}
    for group, spec in matcher.items():
        if isinstance(spec, str):
            out[group] = anchor(spec)
        elif spec is None:
            out[group] = None
        else:
            out[group] = [(anchor(pattern), suffix) for pattern, suffix in spec]
    return out


def default_out_indices(depth: int, num_levels: int) -> tuple[int, ...]:
    """Evenly spaced block indices ending at the last block (12 blocks, 4 levels -> 2, 5, 8, 11)."""
    if num_levels < 1:
        raise ValueError(f"need at least one output level, got {num_levels}")
    return tuple(max(0, round(depth * (i + 1) / num_levels) - 1) for i in range(num_levels))


class ViTHooks(AttentionBackendHook):
    """Mixin: the training hooks of a model that wraps a timm ViT (or another wrapper), taken from the submodule
    named by :attr:`vit_path` with its parameter names re-anchored under that path.

    The engine calls them: ``group_matcher()`` (layer-wise lr decay: encoder blocks only, so necks and heads keep
    the full lr), ``no_weight_decay()``, ``set_grad_checkpointing()``, and ``set_attention_backend()`` (inherited,
    over the whole model).
    """

    vit_path: str  # dotted submodule path, e.g. "encoder" or "detector.backbone.vit"

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return prefix_group_matcher(self.get_submodule(self.vit_path).group_matcher(coarse), self.vit_path + ".")

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"{self.vit_path}.{name}" for name in self.get_submodule(self.vit_path).no_weight_decay()}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.get_submodule(self.vit_path).set_grad_checkpointing(enable)


class ViTBackbone(nn.Module, ViTHooks):
    """A timm ViT returning the patch-token maps of selected blocks.

    Args:
        encoder: a timm ``VisionTransformer`` (built with ``dynamic_img_size=True``, as :func:`build_encoder` does),
            already holding its initial weights. It is pruned in place to the blocks ``out_indices`` need.
        out_indices: block indices whose outputs are returned, in output order (negative = from the end; repeats
            allowed, so a 2-block test encoder can still feed a 4-level pyramid), or an int ``n`` for ``n`` evenly
            spaced blocks ending at the last (:func:`default_out_indices`).
        frozen: no gradients and always in eval mode (drop path off): the frozen-feature probe protocol.

    Attributes:
        embed_dim: channels of every output map.
        patch_size: stride of every output map.
    """

    vit_path = "encoder"

    def __init__(self, *, encoder: VisionTransformer, out_indices: Sequence[int] | int, frozen: bool = False):
        super().__init__()
        if not getattr(encoder, "dynamic_img_size", False):
            raise ValueError("the encoder must be built with dynamic_img_size=True to accept any input size")
        depth = len(encoder.blocks)
        if isinstance(out_indices, int):
            out_indices = default_out_indices(depth, out_indices)
        absolute = []
        for i in out_indices:
            if not -depth <= i < depth:
                raise ValueError(f"out_indices entry {i} is out of range for an encoder of {depth} blocks")
            absolute.append(i % depth)
        self.out_indices = tuple(absolute)
        self._taken = sorted(set(absolute))
        encoder.prune_intermediate_layers(self._taken, prune_norm=True, prune_head=True)
        self.encoder = encoder
        self.embed_dim = encoder.embed_dim
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.frozen = frozen
        if frozen:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> "ViTBackbone":
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward(self, rgb: torch.Tensor) -> list[torch.Tensor]:
        """``rgb``: ``(B, 3, H, W)``, uint8 (the batch convention) or float in ``[0, 1]`` -> one
        ``(B, embed_dim, ceil(H/p), ceil(W/p))`` map per out index (ImageNet normalisation is applied here)."""
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be (B, 3, H, W), got shape {tuple(rgb.shape)}")
        x = pad_to_multiple(normalize_rgb(rgb), self.patch_size)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.encoder.forward_intermediates(x, indices=self._taken, intermediates_only=True)
        return [maps[self._taken.index(i)] for i in self.out_indices]


def build_backbone(*, encoder: str, out_indices: Sequence[int] | int, img_size: int | Sequence[int] = 224,
                   drop_path_rate: float = 0.0, init_from: str | None = None, frozen: bool = False) -> ViTBackbone:
    """Build the RGB encoder, load its initial weights, and wrap it as a :class:`ViTBackbone`.

    Args:
        encoder: encoder name, e.g. ``"vit_tiny_patch16"`` (see :data:`mask3d_vit.models.vit.ENCODER_NAMES`).
        out_indices: blocks whose outputs are returned (see :class:`ViTBackbone`).
        img_size: nominal input size: the position-embedding grid that loaded weights are resampled to.
        drop_path_rate: stochastic depth of the encoder (MAE fine-tuning uses 0.1).
        init_from: initial weights for :func:`mask3d_vit.models.weights.load_encoder_weights` (a Mask3D or MAE-RGB
            run or checkpoint of ours, an exported ``.safetensors``, an ImageNet MAE ``.pth`` or a timm state dict);
            None = random initialisation (scratch).
        frozen: freeze the encoder (probe).
    """
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    vit = build_encoder(encoder, img_size=size, drop_path_rate=drop_path_rate)
    if init_from:
        logger.info("initialised the backbone: %s", load_encoder_weights(vit, init_from))
    return ViTBackbone(encoder=vit, out_indices=out_indices, frozen=frozen)
