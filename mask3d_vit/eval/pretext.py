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
from ..engine import distributed as D
from ..engine.data import seeded_rng
from ..models.mask3d import interpolate_visible_depth

__all__ = ["CATEGORIES", "patch_categories", "PretextDiagnostics", "ReconstructionEvaluator", "diagnose"]

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
    def update(self, model, batch: dict, masks: dict, grid: tuple[int, int], intact: torch.Tensor | None = None
               ) -> None:
        """Score one prepared batch (:meth:`Mask3D.prepare_batch`) under fixed ``masks`` (:meth:`Mask3D.draw_masks`).

        Needs at least two frames: the swapped colour of frame ``i`` is frame ``i - 1``'s.

        Args:
            model: a depth-predicting Mask3D in eval mode.
            batch: the prepared batch.
            masks: the masks every variant is scored under.
            grid: the patch grid ``(h, w)``.
            intact: the decoder's depth prediction ``(B, N, p * p)`` for this batch, colour intact, when the caller
                has already computed it (the validation pass does); None = computed here.
        """
        rgb, depth, valid = batch[RGB], batch[DEPTH], batch[VALID]
        if rgb.shape[0] < 2:
            raise ValueError("pretext diagnostics swap colour between frames of a batch: use batches of >= 2 frames")
        target = model.depth_target_map(depth, valid)
        preds = {} if intact is None else {"model": intact.float()}
        for name, colour in (("model", rgb), ("swapped", rgb.roll(1, dims=0))):
            if name in preds:
                continue
            preds[name] = model.forward_prediction(colour, masks, depth, grid)["depth"].float()
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


class ReconstructionEvaluator:
    """``evaluator(model) -> metrics`` of pre-training: the mean loss terms on held-out frames, with masks drawn from
    a fixed seed (comparable across evaluations and runs), reduced over ranks. For depth objectives it adds the
    :class:`PretextDiagnostics` (``rgb_reliance``, ``vs_interpolation`` and the loss by patch category), reusing
    the validation pass's own prediction for the intact colour.

    Args:
        dataset: held-out samples.
        batch_size: frames per batch (at least 2: the diagnostics swap colour between frames).
        num_batches: evaluate the first ``num_batches * batch_size`` frames, shared among ranks.
        device: this rank's device.
    """

    def __init__(self, dataset, *, batch_size: int, num_batches: int, device: torch.device):
        rank, world = D.get_rank(), D.get_world_size()
        n = min(len(dataset), num_batches * batch_size)
        self.indices = list(range(rank, n, world))
        self.dataset, self.batch_size, self.device = dataset, max(2, batch_size), device

    def __call__(self, model) -> dict[str, float]:
        sums: dict[str, torch.Tensor] = {}
        count = torch.zeros((), dtype=torch.float64, device=self.device)
        diag = PretextDiagnostics() if model.predicts_depth else None
        with seeded_rng(1234 + D.get_rank()):
            for start in range(0, len(self.indices), self.batch_size):
                chunk = self.indices[start:start + self.batch_size]
                batch = torch.utils.data.default_collate([self.dataset[i] for i in chunk])
                batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                prepared, grid = model.prepare_batch(batch)
                masks = model.draw_masks(len(chunk), grid, self.device)
                # Mask3D.forward's steps, kept apart so the diagnostics reuse the decoder's prediction.
                pred = model.forward_prediction(prepared[RGB], masks, prepared.get(DEPTH), grid)
                out = model.forward_loss(pred, prepared, masks, grid)
                for k, v in out.items():
                    if k.startswith("loss") and isinstance(v, torch.Tensor) and v.ndim == 0:
                        sums[k] = sums.get(k, 0) + v.double() * len(chunk)
                count += len(chunk)
                if diag is not None and len(chunk) > 1:
                    diag.update(model, prepared, masks, grid, intact=pred["depth"])
        keys = sorted(sums)
        total = D.all_reduce_sum(torch.stack([sums[k] for k in keys] + [count]))
        metrics = {f"val_{k}": (total[i] / total[-1].clamp(min=1)).item() for i, k in enumerate(keys)}
        if diag is not None:
            diag_keys, diag_sums = diag.state()
            diag_sums = D.all_reduce_sum(diag_sums.to(self.device))
            metrics.update({f"val_{k}": v for k, v in PretextDiagnostics.compute(diag_keys, diag_sums.cpu()).items()})
        return metrics
