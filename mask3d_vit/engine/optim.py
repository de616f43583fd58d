"""AdamW with timm's parameter groups, and the per-iteration warm-up + cosine / poly learning-rate schedule."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay


@dataclass
class OptimConfig:
    """Optimizer and schedule. The peak learning rate is ``base_lr * batch_size / 256`` (MAE's linear scaling)."""
    base_lr: float = 1.5e-4
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    layer_decay: float = 1.0          # < 1: layer-wise lr decay through the model's group_matcher() (fine-tuning)
    warmup_epochs: float = 1.0
    schedule: str = "cosine"          # cosine | poly | constant (after warm-up)
    poly_power: float = 1.0
    clip_grad: float = 3.0            # max global grad norm; 0 disables clipping


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW without weight decay on norms, biases (ndim <= 1) and the names in ``model.no_weight_decay()``.

    Each param group carries ``lr_scale`` (1.0, or the layer-decay factor) that :func:`set_lr` multiplies in.
    """
    skip = tuple(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else ()
    if cfg.layer_decay < 1.0:
        groups = param_groups_layer_decay(model, cfg.weight_decay, no_weight_decay_list=skip,
                                          layer_decay=cfg.layer_decay)
    else:
        groups = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=skip)
    for g in groups:
        g.setdefault("lr_scale", 1.0)
    # torch's fused kernel updates every tensor in one pass: on 2 CPU cores a ViT-Tiny step's AdamW takes 12 ms
    # instead of 40 (docs/benchmarks.md), and on a GPU it is a handful of launches instead of one per op.
    fused = {p.device.type for g in groups for p in g["params"]} <= {"cpu", "cuda"}
    return torch.optim.AdamW(groups, lr=cfg.base_lr, betas=tuple(cfg.betas), fused=fused or None)


def lr_at(step: int, *, peak: float, total: int, warmup: int, cfg: OptimConfig,
          decay_from: tuple[int, float] | None = None) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up, then the configured decay to min_lr.

    Args:
        decay_from: (step, rate) the decay starts from; None = (``warmup``, ``peak``). A run whose length changed on
            resume decays from its last step's rate, so the rate does not jump.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "constant":
        return peak
    start, peak = decay_from or (warmup, peak)
    progress = min(1.0, (step - start) / max(1, total - start))
    if cfg.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif cfg.schedule == "poly":
        factor = (1.0 - progress) ** cfg.poly_power
    else:
        raise ValueError(f"optim.schedule={cfg.schedule!r}: use cosine, poly or constant")
    return cfg.min_lr + (peak - cfg.min_lr) * factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
