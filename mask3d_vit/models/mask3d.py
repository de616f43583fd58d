"""Mask3D pre-training (Hou et al., CVPR 2023): reconstruct dense depth from masked colour and masked depth patches.

::

    rgb (B,3,H,W) -> patches -> keep 25 % --> ViT encoder (timm, kept for downstream) --+
                                                                                       +--> decoder --> dense depth
    depth (B,1,H,W) -> patches -> keep 25 % --> light depth branch ---------------------+        (+ masked RGB, MAE)

The colour encoder sees only its visible tokens (MAE-style, so pre-training is cheap). The decoder runs on the full
patch grid of colour tokens (visible positions carry encoder features, hidden ones a learned mask token) with the
visible depth tokens either appended to the sequence (``fusion="concat"``) or added to the tokens of their own
patches (``fusion="add"``), and a per-patch linear head predicts the ``p x p`` depth values of every patch. Only
``Mask3D.encoder`` is kept for downstream tasks (see :mod:`mask3d_vit.models.weights`).

Objectives: ``"depth"`` (Mask3D), ``"rgb"`` (the MAE baseline: no depth branch at all) and ``"rgb+depth"`` (both
heads, ``loss = loss_depth + rgb_loss_weight * loss_rgb``).

Conventions:

- Depth enters the depth branch as ``depth / max_depth`` with invalid pixels (zero, NaN, inf, negative, beyond
  ``max_depth``, or ``batch["valid"]`` False) set to 0, so a valid reading is always > 0 and "no reading" is 0.
- Depth targets (``depth_target``): ``"metric"`` metres; ``"log"`` log-metres; ``"standardized"`` per frame
  ``(d - mean) / std`` over that frame's valid pixels. The loss covers valid pixels only, averaged over all valid
  pixels of the batch; a batch without valid depth gives a zero loss that still backpropagates.
- The colour target is the ``[0, 1]`` image; with ``norm_pix_loss`` each patch is standardised by its own mean and
  variance (MAE), and the loss is the MSE over colour-hidden patches.
"""
from __future__ import annotations

import torch
from timm.layers import PatchEmbed, build_sincos2d_pos_embed, resample_abs_pos_embed
from timm.models import checkpoint_seq
from timm.models.vision_transformer import Block, VisionTransformer, init_weights_vit_timm
import torch.nn.functional as F
from torch import nn

from ..config import config_kwargs, signature_config
from ..data.sample import DEPTH, RGB, VALID, depth_validity
from .vit import AttentionBackendHook, build_encoder, check_image, normalize_rgb

__all__ = [
    "OBJECTIVES", "DEPTH_TARGETS", "LOSSES", "LOSS_REGIONS", "FUSIONS", "MASK_SCHEMES", "DEPTH_PRIORS", "Mask3DConfig",
    "Mask3D", "DepthBranch", "ARCHITECTURES",
    "random_masking", "take_tokens", "patchify", "unpatchify", "interpolate_visible_depth", "embed_visible", "sincos_pos_embed",
    "mask3d_vit_tiny_patch16_dec128d2b", "mask3d_vit_small_patch16_dec128d2b",
    "mask3d_vit_base_patch16_dec512d8b", "mask3d_vit_large_patch16_dec512d8b",
]

OBJECTIVES = ("depth", "rgb", "rgb+depth")
DEPTH_TARGETS = ("metric", "log", "standardized")
LOSSES = ("l1", "l2")
LOSS_REGIONS = ("all", "masked", "depth_hidden")
MASK_SCHEMES = ("independent", "complementary", "block")
DEPTH_BLOCK = 2  # side, in patches, of the squares the "block" scheme shows depth in
DEPTH_PRIORS = ("none", "interpolation")
FUSIONS = ("concat", "add")
_EPS = 1e-6


def random_masking(batch: int, num_patches: int, ratio: float, device: torch.device | str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample uniform random patch masking (MAE): each sample hides its own random subset of patches.

    Draws from the global torch RNG of ``device``, so saving/restoring RNG state reproduces the masks exactly.

    Args:
        batch: number of samples ``B``.
        num_patches: patches per sample ``N``.
        ratio: fraction hidden, in ``[0, 1)``; ``round(N * (1 - ratio))`` patches stay visible, at least one.
        device: where the noise and results live.

    Returns:
        ``keep``: ``(B, K)`` int64 indices of the visible patches, ascending (raster order), and
        ``mask``: ``(B, N)`` bool, True = hidden.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return keep_lowest(torch.rand(batch, num_patches, device=device), ratio)


def keep_lowest(noise: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``round(N * (1 - ratio))`` (at least one) patches of lowest ``noise: (B, N)`` per sample ->
    (``keep`` ``(B, K)`` ascending, ``mask`` ``(B, N)`` bool, True = hidden), as :func:`random_masking`."""
    num_keep = max(1, round(noise.shape[1] * (1.0 - ratio)))
    keep = noise.argsort(dim=1)[:, :num_keep].sort(dim=1).values
    mask = torch.ones(noise.shape, dtype=torch.bool, device=noise.device)
    mask.scatter_(1, keep, False)
    return keep, mask


def block_noise(batch: int, grid: tuple[int, int], block: int, device: torch.device | str | None = None
                ) -> torch.Tensor:
    """Masking noise ``(B, h * w)`` constant on ``block x block`` squares of the patch ``grid`` (plus a tie-break
    smaller than the gap between squares), so :func:`keep_lowest` keeps whole squares and hides whole squares:
    holes too wide for the visible neighbours to fill by interpolation."""
    h, w = grid
    coarse = torch.rand(batch, -(-h // block), -(-w // block), device=device)
    noise = coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)[:, :h, :w].reshape(batch, h * w)
    return noise + 1e-4 * torch.rand(batch, h * w, device=device)


def take_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens: (B, N, D)``, ``index: (B, K)`` -> ``(B, K, D)``, the indexed tokens of each sample."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, p * p * C)`` in raster patch order, values ordered (row, col, channel) as MAE."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``(B, N, p * p * C)`` on a ``grid = (h, w)`` patch grid -> ``(B, C, h*p, w*p)``."""
    b, n, d = patches.shape
    p = patch_size
    gh, gw = grid
    c = d // (p * p)
    x = patches.reshape(b, gh, gw, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, gh * p, gw * p)


def embed_visible(patch_embed: PatchEmbed, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Patch-embed only the visible patches: ``images (B, C, H, W)``, ``keep (B, K)`` -> ``(B, K, D)``.

    The same linear map as the patch embedding's strided convolution, applied to the gathered pixels of the kept
    patches only, so a 75 % mask skips 75 % of the embedding work (forward and backward).
    """
    p = patch_embed.patch_size[0]
    w = patch_embed.proj.weight  # (D, C, p, p) -> (D, p * p * C) in patchify's (row, col, channel) order
    weight = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)
    return patch_embed.norm(F.linear(take_tokens(patchify(images, p), keep), weight, patch_embed.proj.bias))


def sincos_pos_embed(grid: tuple[int, int], dim: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding of a ``grid = (h, w)`` patch grid: ``(h * w, dim)``, raster order.

    Being a function of the grid, it fits any image size without resampling, unlike learned embeddings.
    """
    return build_sincos2d_pos_embed(list(grid), dim=dim, device=device, dtype=dtype)


def interpolate_visible_depth(target: torch.Tensor, valid: torch.Tensor, depth_mask: torch.Tensor, patch_size: int,
                              power: float = 2.0) -> torch.Tensor:
    """Model-free depth completion: spread the visible depth patches over the whole frame.

    Each pixel gets the inverse-distance-weighted (``1 / d^power``, ``d`` from the pixel to a patch centre) mean of
    the visible patches' mean target values; a visible patch's own pixels are predicted the same way, so the
    baseline is smooth rather than a copy of its input.

    Args:
        target: ``(B, 1, H, W)`` depth in the loss's target space, 0 where invalid.
        valid: ``(B, 1, H, W)`` bool.
        depth_mask: ``(B, N)`` bool, True = hidden; patches with no valid pixel count as hidden.
        patch_size: ``p``.
        power: the inverse-distance exponent.

    Returns:
        ``(B, N, p*p)`` prediction in target space, patch layout as :func:`patchify`.
        A frame with no visible valid depth gets 0 (the target space's origin).
    """
    b, _, h, w = target.shape
    p = patch_size
    gh, gw = h // p, w // p
    weight = patchify(valid.float(), p)                                     # (B, N, p*p)
    count = weight.sum(-1)
    means = (patchify(target.float(), p) * weight).sum(-1) / count.clamp_min(1)  # (B, N)
    usable = ~depth_mask & (count > 0)
    # Pixel and patch-centre coordinates in pixels; distances are ~p even at a patch's own centre, so no 1/0.
    ys, xs = torch.meshgrid(torch.arange(h, device=target.device) + 0.5,
                            torch.arange(w, device=target.device) + 0.5, indexing="ij")
    pixels = torch.stack([ys, xs], -1).reshape(1, h, w, 2)
    pixels = patchify(pixels.permute(0, 3, 1, 2), p).reshape(gh * gw * p * p, 2)  # patch-major pixel order
    cy, cx = torch.meshgrid((torch.arange(gh, device=target.device) + 0.5) * p,
                            (torch.arange(gw, device=target.device) + 0.5) * p, indexing="ij")
    centres = torch.stack([cy, cx], -1).reshape(-1, 2)
    inv = (torch.cdist(pixels, centres) + 0.5).pow(-power)                   # (N*p*p, N), shared by the batch
    out = torch.zeros(b, gh * gw * p * p, device=target.device)
    for i in range(b):  # one frame at a time: (N*p*p, K) stays small at any image size
        k = usable[i]
        if k.any():
            wk = inv[:, k]
            out[i] = (wk @ means[i, k]) / wk.sum(-1)
    return out.reshape(b, gh * gw, p * p)


def _check_batched(x: torch.Tensor, patch_size: int, name: str, channels: int) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be a batch (B, {channels}, H, W), got shape {tuple(x.shape)}; stack samples "
                         f"(or add a batch dimension with x[None])")
    check_image(x, patch_size, name=name, channels=channels)


class DepthBranch(nn.Module):
    """Encodes the visible depth patches: 1-channel patch embedding + 2D sin-cos positions + light ViT blocks.

    Args:
        patch_size: must equal the colour encoder's, so depth and colour patches align.
        dim: token width.
        depth: number of transformer blocks (0: the patch embedding alone).
        num_heads: attention heads per block.
    """

    def __init__(self, *, patch_size: int = 16, dim: int = 128, depth: int = 2, num_heads: int = 4):
        super().__init__()
        if dim % 4:
            raise ValueError(f"depth_dim={dim} must be divisible by 4 for 2D sin-cos position embeddings")
        if depth and dim % num_heads:
            raise ValueError(f"depth_dim={dim} is not divisible by depth_heads={num_heads}")
        self.patch_size = patch_size
        self.patch_embed = PatchEmbed(img_size=None, patch_size=patch_size, in_chans=1, embed_dim=dim)
        self.blocks = nn.Sequential(*[Block(dim=dim, num_heads=num_heads, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim) if depth else nn.Identity()

    def forward(self, depth: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``depth: (B, 1, H, W)`` normalised, 0 = invalid; ``keep: (B, K)`` visible patches -> ``(B, K, dim)``."""
        grid = (depth.shape[-2] // self.patch_size, depth.shape[-1] // self.patch_size)
        pos = sincos_pos_embed(grid, self.patch_embed.proj.out_channels, device=depth.device, dtype=depth.dtype)
        x = embed_visible(self.patch_embed, depth, keep) + pos[keep]
        return self.norm(self.blocks(x))


class Mask3D(nn.Module, AttentionBackendHook):
    """Masked RGB-D pre-training of a timm ViT by dense depth reconstruction (plus the MAE colour baseline).

    Args:
        encoder: name of the colour encoder (:func:`mask3d_vit.models.vit.build_encoder`).
        img_size: ``(H, W)`` nominal training size: the grid of the encoder's learned position embedding. Other
            sizes (multiples of the patch size) also work; the embedding is resampled on the fly.
        objective: ``"depth"`` (Mask3D), ``"rgb"`` (MAE; no depth branch or depth head is built, so DDP sees no
            unused parameters) or ``"rgb+depth"``.
        rgb_mask_ratio: fraction of colour patches hidden from the encoder, in ``[0, 1)``.
        depth_mask_ratio: fraction of depth patches hidden, in ``[0, 1]``; 1 means no depth input at all (dense
            depth from colour alone; the depth branch is then not built).
        depth_blocks: transformer blocks in the depth branch (0: patch embedding only).
        depth_dim: token width of the depth branch.
        depth_heads: attention heads of the depth branch.
        fusion: how the visible depth tokens meet the colour grid in the decoder: ``"concat"`` appends them to the
            decoder sequence (``N + K_depth`` tokens; attention decides where they matter), ``"add"`` sums each
            into the colour-grid token at its own patch (``N`` tokens: a cheaper decoder).
        decoder_dim: token width of the decoder.
        decoder_depth: transformer blocks in the decoder.
        decoder_heads: attention heads of the decoder.
        depth_target: ``"metric"``, ``"log"`` or ``"standardized"`` (per frame, over its valid pixels).
        loss: ``"l1"`` or ``"l2"`` on the depth target.
        loss_region: which patches the depth loss covers: ``"all"`` (dense, as in the paper), ``"masked"``
            (colour-hidden patches) or ``"depth_hidden"`` (patches whose depth the model did not see).
        mask_scheme: ``"independent"`` colour and depth masks; ``"complementary"``: visible depth patches are
            drawn from the colour-hidden ones first, so no patch shows both; or ``"block"``: depth is shown and
            hidden in squares of ``DEPTH_BLOCK x DEPTH_BLOCK`` patches (colour masked as ``"independent"``).
        depth_prior: ``"none"``, or ``"interpolation"``: the depth head predicts a correction to
            :func:`interpolate_visible_depth` of the visible depth patches, so the decoder starts from what spreading
            the sparse depth gives and is trained only on what it leaves out (where colour must help).
        max_depth: depth at or beyond this (metres) is invalid; also the depth input scale.
        rgb_loss_weight: weight of the colour loss for ``"rgb+depth"``.
        norm_pix_loss: MAE's per-patch normalised colour target.
        drop_path_rate: stochastic depth of the colour encoder.
    """

    def __init__(self, *, encoder: str = "vit_tiny_patch16", img_size: tuple[int, int] = (128, 128),
                 objective: str = "depth", rgb_mask_ratio: float = 0.75, depth_mask_ratio: float = 0.75,
                 depth_blocks: int = 2, depth_dim: int = 128, depth_heads: int = 4, fusion: str = "add",
                 decoder_dim: int = 128, decoder_depth: int = 2, decoder_heads: int = 4, depth_target: str = "log",
                 loss: str = "l1", loss_region: str = "all", mask_scheme: str = "independent",
                 depth_prior: str = "none", max_depth: float = 10.0, rgb_loss_weight: float = 1.0,
                 norm_pix_loss: bool = True, drop_path_rate: float = 0.0):
        super().__init__()
        self.grad_checkpointing = False
        choices = (("objective", objective, OBJECTIVES), ("depth_target", depth_target, DEPTH_TARGETS),
                   ("loss", loss, LOSSES), ("loss_region", loss_region, LOSS_REGIONS),
                   ("fusion", fusion, FUSIONS), ("mask_scheme", mask_scheme, MASK_SCHEMES),
                   ("depth_prior", depth_prior, DEPTH_PRIORS))
        for key, value, valid in choices:
            if value not in valid:
                raise ValueError(f"{key}={value!r} is not supported; choose one of {', '.join(valid)}")
        if not 0.0 <= rgb_mask_ratio < 1.0:
            raise ValueError(f"rgb_mask_ratio={rgb_mask_ratio} must be in [0, 1): the encoder needs visible patches")
        if not 0.0 <= depth_mask_ratio <= 1.0:
            raise ValueError(f"depth_mask_ratio={depth_mask_ratio} must be in [0, 1]")
        if not max_depth > 0:
            raise ValueError(f"max_depth={max_depth} must be a positive distance in metres")
        if decoder_dim % 4 or decoder_dim % decoder_heads:
            raise ValueError(f"decoder_dim={decoder_dim} must be divisible by 4 (sin-cos positions) and by "
                             f"decoder_heads={decoder_heads}")
        self.objective = objective
        self.fusion = fusion
        self.rgb_mask_ratio = rgb_mask_ratio
        self.depth_mask_ratio = depth_mask_ratio
        self.depth_target = depth_target
        self.loss = loss
        self.loss_region = loss_region
        self.mask_scheme = mask_scheme
        self.depth_prior = depth_prior
        self.max_depth = max_depth
        self.rgb_loss_weight = rgb_loss_weight
        self.norm_pix_loss = norm_pix_loss
        self.predicts_depth = objective in ("depth", "rgb+depth")
        self.predicts_rgb = objective in ("rgb", "rgb+depth")
        self.uses_depth_input = self.predicts_depth and depth_mask_ratio < 1.0
        if depth_prior != "none" and not self.uses_depth_input:
            raise ValueError(f"depth_prior={depth_prior!r} spreads the visible depth patches: it needs a depth "
                             f"objective with depth_mask_ratio < 1 (got objective={objective!r}, "
                             f"depth_mask_ratio={depth_mask_ratio})")
        if self.predicts_rgb and rgb_mask_ratio == 0:
            raise ValueError(f"objective={objective!r} reconstructs hidden colour patches: rgb_mask_ratio must be > 0 "
                             "(MAE hides 0.75)")
        if depth_prior != "none" and depth_target == "standardized":
            raise ValueError("depth_prior needs depth_target 'log' or 'metric': a standardized target is scaled by "
                             "statistics of the hidden depth too, which the prior must not see")

        self.encoder: VisionTransformer = build_encoder(encoder, img_size=tuple(img_size),
                                                        drop_path_rate=drop_path_rate)
        self.patch_size = self.encoder.patch_embed.patch_size[0]
        for side, size in zip(("height", "width"), img_size):
            if size % self.patch_size:
                raise ValueError(f"img_size {tuple(img_size)}: {side} {size} is not divisible by the patch size "
                                 f"{self.patch_size}; use a multiple of {self.patch_size}")

        p = self.patch_size
        self.decoder_embed = nn.Linear(self.encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.rgb_type_embed = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        if self.uses_depth_input:
            self.depth_branch = DepthBranch(patch_size=p, dim=depth_dim, depth=depth_blocks, num_heads=depth_heads)
            self.depth_embed = nn.Linear(depth_dim, decoder_dim)
            self.depth_type_embed = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_blocks = nn.Sequential(*[Block(dim=decoder_dim, num_heads=decoder_heads, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        if self.predicts_depth:
            self.depth_head = nn.Linear(decoder_dim, p * p)
        if self.predicts_rgb:
            self.rgb_head = nn.Linear(decoder_dim, p * p * 3)
        self._init_weights()

    @classmethod
    def from_config(cls, cfg: "Mask3DConfig") -> "Mask3D":
        """Build from the ``model`` section of a run config (its fields are this class's arguments)."""
        return cls(**config_kwargs(cls, cfg))

    def _init_weights(self) -> None:
        # The encoder keeps timm's own initialisation (so it matches a freshly created timm ViT); the new modules
        # get timm's ViT scheme too, and the learned tokens N(0, 0.02) as MAE's mask token.
        for name, module in self.named_children():
            if name != "encoder":
                module.apply(init_weights_vit_timm)
        for param in self.parameters(recurse=False):
            nn.init.normal_(param, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """Position embeddings and learned tokens (norms and biases are excluded by the optimizer by ndim)."""
        params = dict(self.named_parameters())
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        names |= {"mask_token", "rgb_type_embed", "depth_type_embed"}
        return {n for n in names if n in params}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder and decoder block activations during backward: far less activation memory for about
        a third more compute (``train.grad_checkpointing=true``)."""
        self.grad_checkpointing = enable

    def _run_blocks(self, blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint_seq(blocks, x)
        return blocks(x)

    def forward_encoder(self, rgb: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Run the colour encoder on the visible patches only.

        Args:
            rgb: ``(B, 3, H, W)`` uint8 or ``[0, 1]`` float.
            keep: ``(B, K)`` visible patch indices (raster order on the ``H/p x W/p`` grid).

        Returns:
            ``(B, 1 + K, D)``: class token, then the encoded visible patches.
        """
        enc = self.encoder
        b = rgb.shape[0]
        h, w = rgb.shape[-2] // self.patch_size, rgb.shape[-1] // self.patch_size
        pos = resample_abs_pos_embed(enc.pos_embed, new_size=(h, w), old_size=enc.patch_embed.grid_size,
                                     num_prefix_tokens=1)
        # gather, not pos[0, 1:][keep]: that indexing's backward accumulates the batch's repeated indices in a
        # thread-dependent order on CPU, so two identical runs drifted apart in the last bits of pos_embed.
        pos_visible = take_tokens(pos[:, 1:].expand(b, -1, -1), keep)
        x = embed_visible(enc.patch_embed, normalize_rgb(rgb), keep) + pos_visible
        cls = (enc.cls_token + pos[:, :1]).expand(b, -1, -1)
        x = enc.norm_pre(enc.pos_drop(torch.cat([cls, x], dim=1)))
        return enc.norm(self._run_blocks(enc.blocks, x))

    def draw_masks(self, batch: int, grid: tuple[int, int], device: torch.device | str | None = None) -> dict:
        """Draw one batch's colour and depth masks from the global RNG (``mask_scheme`` decides how they relate).

        Returns:
            ``rgb_keep`` ``(B, K_rgb)`` visible colour patches, ascending; ``rgb_mask`` ``(B, N)`` bool, True =
            hidden; for depth objectives also ``depth_mask`` ``(B, N)`` bool, True = hidden, and ``depth_keep``
            ``(B, K_depth)`` (absent when no depth enters the model, ``depth_mask_ratio=1``).
        """
        num_patches = grid[0] * grid[1]
        rgb_keep, rgb_mask = random_masking(batch, num_patches, self.rgb_mask_ratio, device)
        masks = {"rgb_keep": rgb_keep, "rgb_mask": rgb_mask}
        if not self.predicts_depth:
            return masks
        if not self.uses_depth_input:
            masks["depth_mask"] = torch.ones(batch, num_patches, dtype=torch.bool, device=device)
            return masks
        if self.mask_scheme == "complementary":
            # Depth is shown where colour is hidden first: a visible colour patch never has its own depth, so
            # depth there must come from what the encoder saw, not from copying the input.
            noise = torch.rand(batch, num_patches, device=device) + (~rgb_mask).float()
            depth_keep, depth_mask = keep_lowest(noise, self.depth_mask_ratio)
        elif self.mask_scheme == "block":
            depth_keep, depth_mask = keep_lowest(block_noise(batch, grid, DEPTH_BLOCK, device), self.depth_mask_ratio)
        else:
            depth_keep, depth_mask = random_masking(batch, num_patches, self.depth_mask_ratio, device)
        masks.update(depth_keep=depth_keep, depth_mask=depth_mask)
        return masks

    def forward_prediction(self, rgb: torch.Tensor, masks: dict, depth: torch.Tensor | None, grid: tuple[int, int]
                           ) -> dict:
        """:meth:`forward_encoder` then :meth:`forward_decoder`: every patch predicted from the visible colour of
        ``rgb`` and the visible ``depth`` under ``masks`` (the diagnostics call it with another frame's colour)."""
        return self.forward_decoder(self.forward_encoder(rgb, masks["rgb_keep"]), masks, depth, grid)

    def forward_decoder(self, latent: torch.Tensor, masks: dict, depth: torch.Tensor | None,
                        grid: tuple[int, int]) -> dict:
        """Fuse encoder features and visible depth on the full patch grid and predict every patch.

        Args:
            latent: ``(B, 1 + K_rgb, D_enc)`` from :meth:`forward_encoder`.
            masks: from :meth:`draw_masks`.
            depth: ``(B, 1, H, W)`` metres with invalid pixels 0 (read only where ``depth_keep`` says).
            grid: ``(h, w)`` patch grid.

        Returns:
            ``depth``: ``(B, N, p*p)`` in the depth target's space; ``rgb``: ``(B, N, p*p*3)`` (MAE target space),
            each for the objectives that predict it.
        """
        b, n = latent.shape[0], grid[0] * grid[1]
        tokens = self.decoder_embed(latent)
        cls, visible = tokens[:, :1], tokens[:, 1:]
        keep = masks["rgb_keep"]
        # Full colour grid: encoder features where visible, the mask token where hidden.
        grid_tokens = visible.new_zeros(b, n, visible.shape[-1]).scatter(
            1, keep.unsqueeze(-1).expand(-1, -1, visible.shape[-1]), visible)
        grid_tokens = torch.where(masks["rgb_mask"].unsqueeze(-1), self.mask_token.to(grid_tokens.dtype),
                                  grid_tokens)
        pos = sincos_pos_embed(grid, grid_tokens.shape[-1], device=latent.device, dtype=grid_tokens.dtype)
        grid_tokens = grid_tokens + pos + self.rgb_type_embed
        sequence = [cls, grid_tokens]
        if self.uses_depth_input:
            keep_d = masks["depth_keep"]
            depth_tokens = self.depth_embed(self.depth_branch(depth / self.max_depth, keep_d))
            depth_tokens = (depth_tokens + self.depth_type_embed).to(grid_tokens.dtype)
            if self.fusion == "add":
                index = keep_d.unsqueeze(-1).expand(-1, -1, grid_tokens.shape[-1])
                sequence[1] = grid_tokens.scatter_add(1, index, depth_tokens)
            else:
                sequence.append(depth_tokens + pos[keep_d])
        x = self.decoder_norm(self._run_blocks(self.decoder_blocks, torch.cat(sequence, dim=1)))[:, 1:1 + n]
        pred = {}
        if self.predicts_depth:
            pred["depth"] = self.depth_head(x).float()
            if self.depth_prior == "interpolation":
                valid = depth > 0  # cleaned depth: every invalid pixel is 0
                pred["depth"] = pred["depth"] + interpolate_visible_depth(
                    self.depth_target_map(depth, valid), valid, masks["depth_mask"], self.patch_size)
        if self.predicts_rgb:
            pred["rgb"] = self.rgb_head(x).float()
        return pred

    def forward_loss(self, pred: dict, batch: dict, masks: dict, grid: tuple[int, int]) -> dict:
        """Score :meth:`forward_decoder`'s predictions: the loss terms (with graph) and the dense predictions.

        ``batch`` must hold the cleaned ``depth`` / ``valid`` of :meth:`clean_depth` for depth objectives.
        """
        out: dict = {}
        losses = []
        if self.predicts_depth:
            target = self.depth_target_map(batch[DEPTH], batch[VALID])
            err, count = self.depth_patch_errors(pred["depth"], target, batch[VALID])
            region = self.loss_region_mask(masks)
            if region is not None:
                err, count = err * region, count * region
            out["loss_depth"] = err.sum() / count.sum().clamp_min(1)
            out["pred_depth"] = self.depth_to_metres(pred["depth"].detach(), batch[DEPTH], batch[VALID], grid)
            losses.append(out["loss_depth"])
        if self.predicts_rgb:
            loss_rgb, out["pred_rgb"] = self._rgb_loss(pred["rgb"], batch[RGB], masks["rgb_mask"], grid)
            out["loss_rgb"] = loss_rgb
            losses.append(loss_rgb * (self.rgb_loss_weight if self.predicts_depth else 1.0))
        out["loss"] = sum(losses)
        return out

    def forward(self, batch: dict, masks: dict | None = None) -> dict:
        """Mask, encode, decode and score one batch.

        Args:
            batch: the sample-dict convention: ``rgb`` uint8 ``(B, 3, H, W)``; for depth objectives ``depth``
                float ``(B, 1, H, W)`` metres and optionally ``valid`` bool ``(B, 1, H, W)``.
            masks: masks from :meth:`draw_masks` to use instead of drawing new ones (diagnostics compare inputs
                under the same masks).

        Returns:
            ``loss`` (scalar, with graph); ``loss_depth`` / ``loss_rgb`` for the terms in use (also with graph:
            a detached copy among the outputs makes inductor return ``loss`` without its graph, torch 2.14);
            ``pred_depth`` ``(B, 1, H, W)`` metres (for ``"standardized"`` de-standardised with the frame's own
            valid statistics: a visualisation convenience); ``pred_rgb`` ``(B, 3, H, W)`` in ``[0, 1]`` (with
            ``norm_pix_loss``, de-normalised with each target patch's statistics, as in MAE's figures);
            ``rgb_mask`` ``(B, N)`` bool and ``depth_mask`` ``(B, N)`` bool, True = hidden.
        """
        batch, grid = self.prepare_batch(batch)
        if masks is None:
            masks = self.draw_masks(batch[RGB].shape[0], grid, batch[RGB].device)
        pred = self.forward_prediction(batch[RGB], masks, batch.get(DEPTH), grid)
        out = self.forward_loss(pred, batch, masks, grid)
        out["rgb_mask"] = masks["rgb_mask"]
        if "depth_mask" in masks:
            out["depth_mask"] = masks["depth_mask"]
        return out

    def prepare_batch(self, batch: dict) -> tuple[dict, tuple[int, int]]:
        """Check a batch and, for depth objectives, clean its depth -> (batch with ``depth`` / ``valid`` whose
        invalid pixels are 0 / False, patch grid ``(h, w)``)."""
        if RGB not in batch:
            raise ValueError(f"batch has no {RGB!r} entry; keys: {', '.join(sorted(batch))}")
        rgb = batch[RGB]
        _check_batched(rgb, self.patch_size, RGB, channels=3)
        grid = (rgb.shape[-2] // self.patch_size, rgb.shape[-1] // self.patch_size)
        if not self.predicts_depth:
            return batch, grid
        depth, valid = self._clean_depth(batch, rgb)
        return {**batch, DEPTH: depth, VALID: valid}, grid

    def loss_region_mask(self, masks: dict) -> torch.Tensor | None:
        """``(B, N, 1)`` float weight of the patches the depth loss covers (``None``: all of them)."""
        if self.loss_region == "masked":
            return masks["rgb_mask"].unsqueeze(-1).float()
        if self.loss_region == "depth_hidden":
            return masks["depth_mask"].unsqueeze(-1).float()
        return None

    def _clean_depth(self, batch: dict, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> depth ``(B, 1, H, W)`` float32 with every invalid pixel set to 0, and the validity mask."""
        if DEPTH not in batch:
            raise ValueError(f"objective {self.objective!r} needs {DEPTH!r} in the batch; keys: "
                             f"{', '.join(sorted(batch))}")
        depth = batch[DEPTH]
        _check_batched(depth, self.patch_size, DEPTH, channels=1)
        if depth.shape[0] != rgb.shape[0] or depth.shape[-2:] != rgb.shape[-2:]:
            raise ValueError(f"depth is {'x'.join(map(str, depth.shape))} but rgb is "
                             f"{'x'.join(map(str, rgb.shape))} (B x C x H x W): pair each frame with a depth map "
                             f"of the same size (resize depth with nearest-neighbour interpolation)")
        depth = depth.float()
        valid = depth_validity(depth, self.max_depth)
        if VALID in batch:
            if batch[VALID].shape != depth.shape:
                raise ValueError(f"valid mask has shape {tuple(batch[VALID].shape)} but depth has "
                                 f"{tuple(depth.shape)}; they must match")
            valid &= batch[VALID].bool()
        # Zero invalid readings before anything else touches them: NaN * 0 is still NaN.
        return torch.where(valid, depth, torch.zeros((), device=depth.device)), valid

    @staticmethod
    def _frame_stats(depth: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std ``(B, 1, 1, 1)`` of each frame's valid depth."""
        weight = valid.float()
        count = weight.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1)
        mean = (depth * weight).sum(dim=(1, 2, 3), keepdim=True) / count
        std = ((((depth - mean) * weight) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count + _EPS).sqrt()
        return mean, std

    def depth_target_map(self, depth: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Cleaned ``depth (B, 1, H, W)`` metres -> the regression target in ``depth_target`` space (0 where
        invalid)."""
        if self.depth_target == "metric":
            return depth
        if self.depth_target == "log":
            return torch.where(valid, depth.clamp_min(_EPS).log(), torch.zeros((), device=depth.device))
        mean, std = self._frame_stats(depth, valid)
        return (depth - mean) / std * valid.float()

    def depth_patch_errors(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-patch summed error and valid-pixel count, both ``(B, N, 1)``.

        Args:
            pred: ``(B, N, p*p)`` in target space.
            target: ``(B, 1, H, W)`` from :meth:`depth_target_map`.
            valid: ``(B, 1, H, W)`` bool; invalid pixels add neither error nor count.
        """
        weight = patchify(valid.float(), self.patch_size)
        diff = pred - patchify(target, self.patch_size)
        err = diff.abs() if self.loss == "l1" else diff.square()
        return (err * weight).sum(-1, keepdim=True), weight.sum(-1, keepdim=True)

    def depth_to_metres(self, pred: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor,
                        grid: tuple[int, int]) -> torch.Tensor:
        """``pred: (B, N, p*p)`` in target space -> ``(B, 1, H, W)`` metres (``"standardized"`` is undone with the
        frame's own valid statistics)."""
        dense = unpatchify(pred, self.patch_size, grid)
        if self.depth_target == "log":
            dense = dense.exp()
        elif self.depth_target == "standardized":
            mean, std = self._frame_stats(depth, valid)
            dense = dense * std + mean
        return dense.clamp(0, self.max_depth)

    def _rgb_loss(self, pred: torch.Tensor, rgb: torch.Tensor, rgb_mask: torch.Tensor,
                  grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``pred: (B, N, p*p*3)`` -> (MAE loss over hidden patches, prediction ``(B, 3, H, W)`` in ``[0, 1]``)."""
        target = patchify(rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb.float(), self.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + _EPS).sqrt()
            target = (target - mean) / std
        per_patch = (pred - target).square().mean(dim=-1)
        hidden = rgb_mask.float()
        loss = (per_patch * hidden).sum() / hidden.sum().clamp_min(1)
        image = pred.detach() * std + mean if self.norm_pix_loss else pred.detach()
        return loss, unpatchify(image, self.patch_size, grid).clamp(0, 1)


def _from_unversioned(model: dict) -> dict:
    """Schema 0 -> 1 of a ``model`` section: a run saved before config versions keeps the settings of its time for
    the keys added since. ``fusion`` came on 2026-11-30 as ``concat`` (what the decoder did before) and its default
    became ``add`` later; ``mask_scheme`` and ``depth_prior`` came on 2026-12-01 with the behaviour before them."""
    return {"fusion": "concat", "mask_scheme": "independent", "depth_prior": "none", **model}


Mask3DConfig = signature_config(
    Mask3D.__init__, "Mask3DConfig", module=__name__,
    doc="""Architecture and objective of :class:`Mask3D`; the ``model`` section of a pre-training run config.

    Derived from :class:`Mask3D`'s keyword arguments (names, types, defaults; documented there). ``img_size``
    follows the run's ``data.size`` unless the recipe, an override or a saved config sets it.
    """,
    metadata={"img_size": {"follows": "data.size"}}, namespace={"MIGRATIONS": {0: _from_unversioned}})

# The named architectures: the settings each factory fixes (a recipe that names one must agree, tests/test_config.py).
ARCHITECTURES = {
    "mask3d_vit_tiny_patch16_dec128d2b": dict(encoder="vit_tiny_patch16", decoder_dim=128, decoder_depth=2,
                                              decoder_heads=4),
    "mask3d_vit_small_patch16_dec128d2b": dict(encoder="vit_small_patch16", decoder_dim=128, decoder_depth=2,
                                               decoder_heads=4),
    "mask3d_vit_base_patch16_dec512d8b": dict(encoder="vit_base_patch16", decoder_dim=512, decoder_depth=8,
                                              decoder_heads=16, depth_dim=256, depth_heads=8),
    "mask3d_vit_large_patch16_dec512d8b": dict(encoder="vit_large_patch16", decoder_dim=512, decoder_depth=8,
                                               decoder_heads=16, depth_dim=256, depth_heads=8),
}


def mask3d_vit_tiny_patch16_dec128d2b(**kwargs) -> Mask3D:
    """Mask3D with a ViT-Ti/16 encoder and a 128-wide, 2-block decoder (fits the 2-core CPU).

    Args:
        **kwargs: any other :class:`Mask3D` argument (and these, to differ from the named architecture).
    """
    return Mask3D(**{**ARCHITECTURES["mask3d_vit_tiny_patch16_dec128d2b"], **kwargs})


def mask3d_vit_small_patch16_dec128d2b(**kwargs) -> Mask3D:
    """Mask3D with a ViT-S/16 encoder and a 128-wide, 2-block decoder.

    Args:
        **kwargs: any other :class:`Mask3D` argument (and these, to differ from the named architecture).
    """
    return Mask3D(**{**ARCHITECTURES["mask3d_vit_small_patch16_dec128d2b"], **kwargs})


def mask3d_vit_base_patch16_dec512d8b(**kwargs) -> Mask3D:
    """Mask3D with a ViT-B/16 encoder, MAE's 512-wide, 8-block decoder and a 256-wide depth branch.

    Args:
        **kwargs: any other :class:`Mask3D` argument (and these, to differ from the named architecture).
    """
    return Mask3D(**{**ARCHITECTURES["mask3d_vit_base_patch16_dec512d8b"], **kwargs})


def mask3d_vit_large_patch16_dec512d8b(**kwargs) -> Mask3D:
    """Mask3D with a ViT-L/16 encoder, MAE's 512-wide, 8-block decoder and a 256-wide depth branch.

    Args:
        **kwargs: any other :class:`Mask3D` argument (and these, to differ from the named architecture).
    """
    return Mask3D(**{**ARCHITECTURES["mask3d_vit_large_patch16_dec512d8b"], **kwargs})
