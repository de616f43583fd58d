"""``mask3d-vit pretrain``: Mask3D (or MAE-RGB, or RGB+depth) pre-training of a ViT on RGB-D frames.

One GPU or CPU::

    mask3d-vit pretrain --config pretrain_synth_tiny --out runs/m3d model.rgb_mask_ratio=0.75

Several GPUs, one node (same command under torchrun; batch_size stays the global batch)::

    torchrun --nproc_per_node 8 -m mask3d_vit pretrain --config pretrain_scannet_base --out runs/m3d_b
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError
from ..data.build import DataConfig, build_dataset
from ..engine import distributed as D
from ..engine.optim import OptimConfig
from ..engine.trainer import TrainConfig
from ..eval.pretext import CATEGORIES, ReconstructionEvaluator, diagnose
from ..models.mask3d import Mask3D, Mask3DConfig
from ..models.weights import load_encoder_weights
from ..viz.reconstruction import reconstruction_visualizer
from .train import restore, train_task


@dataclass
class PretrainConfig:
    """A pre-training run: data, model (objective, masking, decoder, loss), loop and optimizer."""
    data: DataConfig = field(default_factory=DataConfig)
    model: Mask3DConfig = field(default_factory=Mask3DConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val_batches: int = 4          # validation reconstruction loss over this many batches (0 = none)
    init_from: str = ""           # encoder weights to start from (set by --init-from)


def build_model(cfg: PretrainConfig, *, load_init: bool = True) -> Mask3D:
    """The run's model; ``load_init=False`` skips ``cfg.init_from`` (weights restored from a checkpoint)."""
    model = Mask3D.from_config(cfg.model)
    if load_init and cfg.init_from:
        report = load_encoder_weights(model.encoder, cfg.init_from)
        if D.is_main():
            print(f"initialised the RGB encoder from {cfg.init_from}: {report}", flush=True)
    return model


def build_evaluator(cfg: PretrainConfig, *, device: torch.device, out_dir: Path | None = None
                    ) -> ReconstructionEvaluator | None:
    """The validation-loss evaluator of ``cfg.val_batches`` batches of the ``val`` split (None when 0); the batches
    are the size of a training micro-batch. ``out_dir`` is unused: the metrics go to the run's log."""
    if not cfg.val_batches:
        return None
    val_set = build_dataset(cfg.data, split="val", train=False)
    micro = max(1, cfg.train.batch_size // (D.get_world_size() * cfg.train.accum_steps))
    return ReconstructionEvaluator(val_set, batch_size=micro, num_batches=cfg.val_batches, device=device)


def build_figures(cfg: PretrainConfig):
    """The training figure: :func:`~mask3d_vit.viz.reconstruction.reconstruction_visualizer`."""
    return reconstruction_visualizer


def run_pretrain(cfg: PretrainConfig, run_dir: str | Path, resume: str | None = None) -> dict:
    """Pre-train as ``cfg`` says into ``run_dir``; returns the final logged losses and validation metrics."""
    return train_task("pretrain", cfg, run_dir, resume=resume)


def load_pretrain_model(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                        ) -> tuple[Mask3D, PretrainConfig, Path]:
    """Rebuild a pre-training model from a run directory (its newest good checkpoint) or a checkpoint file.

    Returns:
        (model in eval mode on the CPU, the run config with ``overrides`` applied, the checkpoint file used).
    """
    _, model, cfg, ckpt = restore(path, overrides, expect=("pretrain",), expected=(
        "a pre-training checkpoint: `diagnose` judges the pretext task of a `mask3d-vit pretrain` run (for "
        "fine-tuning runs use `mask3d-vit eval`)"))
    return model, cfg, ckpt


def diagnose_run(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, batches: int = 4,
                 batch_size: int = 32) -> dict[str, float]:
    """The pretext diagnostics (:mod:`mask3d_vit.eval.pretext`) of a pre-training run on its first
    ``batches * batch_size`` validation frames (fewer when the split is smaller), and ``frames``: how many."""
    model, cfg, _ = load_pretrain_model(path, overrides)
    if not model.predicts_depth:
        raise ConfigError(f"{path}: objective {cfg.model.objective!r} predicts no depth; nothing to diagnose")
    val_set = build_dataset(cfg.data, split="val", train=False)
    n = min(len(val_set), batches * batch_size)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, range(n)), batch_size=batch_size)
    return {**diagnose(model, loader), "frames": n}


def format_diagnostics(metrics: dict[str, float]) -> str:
    """The diagnostics as a small table: depth loss by patch category for the model, with colour swapped, and for
    the interpolation baseline; then the two headline ratios."""
    lines = ["| patches | model | colour swapped | interpolation |", "|---|---|---|---|"]
    for cat in (*CATEGORIES, "depth_hidden"):
        cells = [metrics.get(f"loss_{cat}{suffix}", float("nan")) for suffix in ("", "_swapped", "_interp")]
        lines.append(f"| {cat} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
    lines += ["", f"rgb_reliance = {metrics['rgb_reliance']:.3f}  (depth-hidden loss, colour swapped / intact; "
                  "~1: the decoder ignores colour)",
              f"vs_interpolation = {metrics['vs_interpolation']:.3f}  (depth-hidden loss, model / interpolation "
              "of the visible depth; < 1: the model beats it)"]
    return "\n".join(lines)


def headline(key: str) -> bool:
    """Summary keys: losses and the headline diagnostics; the loss of every patch category stays in metrics.jsonl."""
    return not key.endswith(("_swapped", "_interp")) and not any(f"val_loss_{c}" in key for c in CATEGORIES)


def _diagnose_main(args: argparse.Namespace) -> None:
    metrics = diagnose_run(args.run, args.overrides, batches=args.batches, batch_size=args.batch_size)
    n = metrics["frames"]
    batches = -(-n // args.batch_size)
    print(f"pretext diagnostics of {args.run} ({n} validation frames: {batches} batch{'es' if batches > 1 else ''} "
          f"of up to {args.batch_size}):")
    print(format_diagnostics(metrics), flush=True)
