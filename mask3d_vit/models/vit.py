"""The RGB encoder: plain timm Vision Transformers, built so that an exported backbone *is* a timm ViT.

Every factory returns ``timm.models.VisionTransformer`` with the architecture of the timm model of the same size
(``TIMM_NAMES``), a class token, no classifier (``num_classes=0``) and ``dynamic_img_size=True``: the position
embeddings are resampled to whatever patch grid the input has, so one encoder serves 128x128 pre-training and
480x640 fine-tuning.

Inputs are normalised with :func:`normalize_rgb` (ImageNet mean/std on ``[0, 1]`` colour). Every model of the
package calls it on the ``uint8`` batch; whoever uses an exported backbone on its own must normalise the same way::

    encoder = build_encoder("vit_small_patch16", img_size=(240, 320))
    tokens = encoder.forward_features(normalize_rgb(batch["rgb"]))   # (B, 1 + 15 * 20, 384)
"""
from __future__ import annotations

import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = [
    "TIMM_NAMES", "ENCODER_NAMES", "build_encoder", "encoder_patch_size", "check_image", "normalize_rgb", "set_attention_backend",
    "AttentionBackendHook",
    "vit_micro_patch16", "vit_tiny_patch16", "vit_tiny_patch8", "vit_small_patch16", "vit_base_patch16",
    "vit_large_patch16",
]

# Our encoder name -> the timm model whose architecture (and therefore state-dict layout) it shares.
TIMM_NAMES = {
    "vit_tiny_patch16": "vit_tiny_patch16_224",
    "vit_small_patch16": "vit_small_patch16_224",
    "vit_base_patch16": "vit_base_patch16_224",
    "vit_large_patch16": "vit_large_patch16_224",
}


def _vit(img_size: int | tuple[int, int], **kwargs) -> VisionTransformer:
    """A timm ViT with the package-wide conventions; ``kwargs`` override them (e.g. ``drop_path_rate``)."""
    args = dict(img_size=img_size, num_classes=0, global_pool="token", class_token=True, dynamic_img_size=True)
    return VisionTransformer(**{**args, **kwargs})


def vit_micro_patch16(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """A 2-block, 64-wide ViT for unit tests and smoke runs (no timm counterpart).

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 16 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=16, embed_dim=64, depth=2, num_heads=2), **kwargs})


def vit_tiny_patch16(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """ViT-Ti/16 (192 wide, 12 blocks, 3 heads), the architecture of timm's ``vit_tiny_patch16_224``.

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 16 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=16, embed_dim=192, depth=12, num_heads=3), **kwargs})


def vit_tiny_patch8(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """ViT-Ti/8: ViT-Ti with 8-pixel patches (no timm counterpart). At 96x128 it gives the 12x16 token grid of a
    192x256 ViT-Ti/16 at the same encoder cost, with 4x cheaper frames and dense heads (docs/results.md).

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 8 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=8, embed_dim=192, depth=12, num_heads=3), **kwargs})


def vit_small_patch16(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """ViT-S/16 (384 wide, 12 blocks, 6 heads), the architecture of timm's ``vit_small_patch16_224``.

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 16 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=16, embed_dim=384, depth=12, num_heads=6), **kwargs})


def vit_base_patch16(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """ViT-B/16 (768 wide, 12 blocks, 12 heads), the architecture of timm's ``vit_base_patch16_224``.

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 16 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=16, embed_dim=768, depth=12, num_heads=12), **kwargs})


def vit_large_patch16(img_size: int | tuple[int, int] = 224, **kwargs) -> VisionTransformer:
    """ViT-L/16 (1024 wide, 24 blocks, 16 heads), the architecture of timm's ``vit_large_patch16_224``.

    Args:
        img_size: nominal input size; sets the stored position-embedding grid (any multiple of 16 still works).
        **kwargs: forwarded to ``timm.models.VisionTransformer`` (e.g. ``drop_path_rate``).
    """
    return _vit(img_size, **{**dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16), **kwargs})


_FACTORIES = {f.__name__: f for f in (vit_micro_patch16, vit_tiny_patch16, vit_tiny_patch8, vit_small_patch16,
                                      vit_base_patch16, vit_large_patch16)}
ENCODER_NAMES = tuple(_FACTORIES)


def build_encoder(name: str, **kwargs) -> VisionTransformer:
    """Build an RGB encoder by name.

    Args:
        name: one of :data:`ENCODER_NAMES` (``vit_micro_patch16``, ``vit_tiny_patch16``, ``vit_tiny_patch8``,
            ``vit_small_patch16``, ``vit_base_patch16``, ``vit_large_patch16``).
        **kwargs: forwarded to the factory, e.g. ``img_size=(240, 320)``, ``drop_path_rate=0.1``.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    return _FACTORIES[name](**kwargs)


def encoder_patch_size(name: str) -> int:
    """Patch side of a named encoder (``vit_tiny_patch8`` -> 8), without building it."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(ENCODER_NAMES)}")
    return int(name.rsplit("patch", 1)[1])


def normalize_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Colour as the encoders expect it: ``[0, 1]`` scale, then ImageNet mean/std per channel.

    Args:
        rgb: ``(B, 3, H, W)``; ``uint8`` in 0-255 (the batch convention) or floating point already in ``[0, 1]``.

    Returns:
        float32 ``(B, 3, H, W)`` (or the input's floating dtype).
    """
    x = rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=x.device, dtype=x.dtype).view(3, 1, 1)
    return (x - mean) / std


def set_attention_backend(module: nn.Module, device: str | torch.device, precision: str = "bf16") -> None:
    """Choose the attention kernel of every timm attention layer in ``module`` for ``device`` and ``precision``.

    Fused ``scaled_dot_product_attention`` is fastest on CUDA and for fp32 on CPU, but on CPU its bf16 backward is
    about 2.6x slower than plain ``softmax(q k^T) v`` matmuls (docs/cpu-performance.md), so low-precision CPU
    training gets the explicit path. It changes no weights.

    Args:
        module: a model holding timm attention layers.
        device: where it runs.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (the engine's resolved precision).
    """
    fused = torch.device(device).type == "cuda" or precision == "fp32"
    for m in module.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = fused


class AttentionBackendHook:
    """Mixin for a model holding timm attention layers: the ``set_attention_backend(device, precision)`` hook that
    :class:`mask3d_vit.engine.trainer.Trainer` calls once it knows where and in which precision the model trains."""

    @torch.jit.ignore
    def set_attention_backend(self, device: str | torch.device, precision: str = "bf16") -> None:
        """Pick the kernel of every timm attention layer of this model (:func:`set_attention_backend`).

        Args:
            device: where the model trains.
            precision: the engine's resolved precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        """
        set_attention_backend(self, device, precision)


def check_image(image: torch.Tensor, patch_size: int, name: str = "rgb", channels: int = 3) -> None:
    """Raise a ``ValueError`` saying what to do when ``image`` cannot be cut into ``patch_size`` patches.

    Args:
        image: ``(C, H, W)`` or ``(B, C, H, W)``.
        patch_size: the encoder's patch size.
        name: what to call the tensor in the message (e.g. ``"depth"``).
        channels: the expected channel count ``C``.
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"{name} must be (B, {channels}, H, W) or ({channels}, H, W), got shape "
                         f"{tuple(image.shape)}")
    c, h, w = image.shape[-3:]
    desc = f"{name} is {c}x{h}x{w}"
    if c != channels:
        raise ValueError(f"{desc}: expected {channels} channel(s) (C x H x W layout), got {c}")
    for side, size in (("height", h), ("width", w)):
        if size % patch_size:
            raise ValueError(f"{desc}: {side} {size} is not divisible by the patch size {patch_size}; "
                             f"resize or crop to a multiple of {patch_size}")
