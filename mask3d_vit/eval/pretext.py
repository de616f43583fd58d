"""Does the pre-training decoder use the colour encoder? Diagnostics of the Mask3D pretext task.

Mask3D is only worth its cost if the depth the decoder reconstructs comes from what the colour encoder saw. A
decoder can instead spread the visible depth patches over the hidden ones and ignore colour: the encoder then
learns nothing about geometry while the loss still falls. Three measurements, on the same frames and masks, tell
the two apart:

- the depth loss by patch category: ``depth_visible`` (the model saw that patch's depth), ``rgb_only`` (depth
  hidden, colour visible) and ``both_hidden``;
- the same with every frame's colour replaced by the next frame's in the batch (``swapped``): a decoder that ignores
  colour scores the same;
- a model-free baseline (``interp``, :func:`~mask3d_vit.models.mask3d.interpolate_visible_depth`): each hidden
  pixel gets the inverse-distance-weighted mean of the visible depth patches, in the loss's own target space.

Headline figures, on depth-hidden patches (``rgb_only`` and ``both_hidden`` together):

- ``rgb_reliance`` = loss with colour swapped / loss with the true colour: ~1 when colour is ignored;
- ``vs_interpolation`` = loss of the model / loss of the interpolation baseline: < 1 when the model beats spreading
  the visible depth (NaN without depth input, ``depth_mask_ratio=1``, where there is nothing to spread).
"""
from __future__ import annotations

import math

import torch

from ..data.sample import DEPTH, RGB, VALID
from ..engine.data import seeded_rng
from ..models.mask3d import interpolate_visible_depth

__all__ = ["CATEGORIES", "patch_categories", "PretextDiagnostics", "diagnose"]

CATEGORIES = ("depth_visible", "rgb_only", "both_hidden")
_VARIANTS = ("model", "swapped", "interp")


def patch_categories(rgb_mask: torch.Tensor, depth_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``rgb_mask``, ``depth_mask``: ``(B, N)`` bool, True = hidden -> ``{category: (B, N) bool}``, a partition."""
    return {"depth_visible": ~depth_mask, "rgb_only": depth_mask & ~rgb_mask, "both_hidden": depth_mask & rgb_mask}


class PretextDiagnostics:
    """Accumulates per-category depth errors of a depth-predicting :class:`~mask3d_vit.models.mask3d.Mask3D` over
    batches; :meth:`compute` turns them into losses and the headline ratios."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, model, batch: dict, masks: dict, grid: tuple[int, int]) -> None:
        """Score one prepared batch (:meth:`Mask3D.prepare_batch`) under fixed ``masks`` (:meth:`Mask3D.draw_masks`).

        Needs at least two frames: the swapped colour of frame ``i`` is frame ``i - 1``'s.
        """
        rgb, depth, valid = batch[RGB], batch[DEPTH], batch[VALID]
        if rgb.shape[0] < 2:
            raise ValueError("pretext diagnostics swap colour between frames of a batch: use batches of >= 2 frames")
        target = model.depth_target_map(depth, valid)
        preds = {}
        for name, colour in (("model", rgb), ("swapped", rgb.roll(1, dims=0))):
            latent = model.forward_encoder(colour, masks["rgb_keep"])
            preds[name] = model.forward_decoder(latent, masks, depth, grid)["depth"].float()
        if model.uses_depth_input:
            preds["interp"] = interpolate_visible_depth(target, valid, masks["depth_mask"], model.patch_size)
        categories = patch_categories(masks["rgb_mask"], masks["depth_mask"])
        for variant, pred in preds.items():
            err, count = model.depth_patch_errors(pred, target, valid)
            for cat, where in categories.items():
                m = where.unsqueeze(-1).float()
                self._add(f"{variant}/{cat}", torch.stack([(err * m).sum(), (count * m).sum()]).double())

    def _add(self, key: str, value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    def state(self) -> tuple[list[str], torch.Tensor]:
        """Keys and a ``(K, 2)`` tensor of (error sum, pixel count): what a distributed run all-reduces."""
        keys = sorted(self.sums)
        return keys, torch.stack([self.sums[k] for k in keys]) if keys else torch.zeros(0, 2, dtype=torch.float64)

    @staticmethod
    def compute(keys: list[str], sums: torch.Tensor) -> dict[str, float]:
        """-> ``loss_<category>[_swapped|_interp]``, ``loss_depth_hidden[...]``, ``rgb_reliance``,
        ``vs_interpolation`` (NaN where a figure has no pixels, e.g. no depth input for ``interp``)."""
        table = dict(zip(keys, sums.tolist()))

        def loss(variant: str, cats: tuple[str, ...]) -> float:
            err = sum(table.get(f"{variant}/{c}", (0.0, 0.0))[0] for c in cats)
            n = sum(table.get(f"{variant}/{c}", (0.0, 0.0))[1] for c in cats)
            return err / n if n else math.nan

        out = {}
        for variant in _VARIANTS:
            suffix = "" if variant == "model" else f"_{variant}"
            for cat in CATEGORIES:
                out[f"loss_{cat}{suffix}"] = loss(variant, (cat,))
            out[f"loss_depth_hidden{suffix}"] = loss(variant, ("rgb_only", "both_hidden"))
        hidden = out["loss_depth_hidden"]
        out["rgb_reliance"] = out["loss_depth_hidden_swapped"] / hidden if hidden else math.nan
        interp = out["loss_depth_hidden_interp"]
        out["vs_interpolation"] = hidden / interp if interp else math.nan
        return out


@torch.no_grad()
def diagnose(model, batches, *, seed: int = 1234) -> dict[str, float]:
    """Run :class:`PretextDiagnostics` over an iterable of batch dicts (on the model's device), with masks drawn
    from ``seed`` so two checkpoints are compared on the same masks."""
    diag = PretextDiagnostics()
    device = next(model.parameters()).device
    with seeded_rng(seed):
        for batch in batches:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            prepared, grid = model.prepare_batch(batch)
            masks = model.draw_masks(prepared[RGB].shape[0], grid, device)
            diag.update(model, prepared, masks, grid)
    return PretextDiagnostics.compute(*diag.state())
