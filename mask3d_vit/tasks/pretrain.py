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

from ..config import ConfigError, load_config, to_dict
from ..data.build import DataConfig, build_dataset
from ..engine import distributed as D
from ..engine.checkpoint import load_latest
from ..engine.data import seed_all, seeded_rng
from ..engine.launch import run_command
from ..engine.optim import OptimConfig
from ..engine.trainer import TrainConfig, Trainer
from ..eval.pretext import CATEGORIES, PretextDiagnostics, diagnose
from ..models.mask3d import Mask3D, Mask3DConfig
from ..models.weights import load_encoder_weights
from ..viz import reconstruction_figure


@dataclass
class PretrainConfig:
    """A pre-training run: data, model (objective, masking, decoder, loss), loop and optimizer."""
    data: DataConfig = field(default_factory=DataConfig)
    model: Mask3DConfig = field(default_factory=Mask3DConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    val_batches: int = 4          # validation reconstruction loss over this many batches (0 = none)
    init_from: str = ""           # encoder weights to start from (set by --init-from)


class ReconstructionEvaluator:
    """Mean pre-training loss terms on held-out frames, with masks drawn from a fixed seed (comparable across
    evaluations and runs), reduced over ranks. For depth objectives it adds the pretext diagnostics of
    :mod:`mask3d_vit.eval.pretext` (``rgb_reliance``, ``vs_interpolation`` and the loss by patch category)."""

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
                out = model(batch, masks=masks)
                for k, v in out.items():
                    if k.startswith("loss") and isinstance(v, torch.Tensor) and v.ndim == 0:
                        sums[k] = sums.get(k, 0) + v.double() * len(chunk)
                count += len(chunk)
                if diag is not None and len(chunk) > 1:
                    diag.update(model, prepared, masks, grid)
        keys = sorted(sums)
        total = D.all_reduce_sum(torch.stack([sums[k] for k in keys] + [count]))
        metrics = {f"val_{k}": (total[i] / total[-1].clamp(min=1)).item() for i, k in enumerate(keys)}
        if diag is not None:
            diag_keys, diag_sums = diag.state()
            diag_sums = D.all_reduce_sum(diag_sums.to(self.device))
            metrics.update({f"val_{k}": v for k, v in PretextDiagnostics.compute(diag_keys, diag_sums.cpu()).items()})
        return metrics


def visualize(model, batch: dict, path: Path) -> None:
    reconstruction_figure(batch, model(batch), path)


def build_model(cfg: PretrainConfig) -> Mask3D:
    model = Mask3D.from_config(cfg.model)
    if cfg.init_from:
        report = load_encoder_weights(model.encoder, cfg.init_from)
        if D.is_main():
            print(f"initialised the RGB encoder from {cfg.init_from}: {report}", flush=True)
    return model


def run_pretrain(cfg: PretrainConfig, run_dir: str | Path, resume: str | None = None) -> dict:
    """Pre-train as ``cfg`` says into ``run_dir``; returns the final logged losses and validation metrics."""
    run_dir = Path(run_dir)
    seed_all(cfg.train.seed)
    model = build_model(cfg)
    train_set = build_dataset(cfg.data, split="train", train=True)
    trainer = Trainer(model, train_set, train=cfg.train, optim=cfg.optim, run_dir=run_dir, config=to_dict(cfg),
                      visualizer=visualize)
    if cfg.val_batches:
        val_set = build_dataset(cfg.data, split="val", train=False)
        micro = max(1, cfg.train.batch_size // (D.get_world_size() * cfg.train.accum_steps))
        trainer.evaluator = ReconstructionEvaluator(val_set, batch_size=micro, num_batches=cfg.val_batches,
                                                    device=trainer.device)
    return trainer.fit(resume=resume)


def load_pretrain_model(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                        ) -> tuple[Mask3D, PretrainConfig, Path]:
    """Rebuild a pre-training model from a run directory (its newest good checkpoint) or a checkpoint file.

    Returns:
        (model in eval mode on the CPU, the run config with ``overrides`` applied, the checkpoint file used).
    """
    ckpt, state = load_latest(path)
    stored = state.get("config")
    if not isinstance(stored, dict) or "task" in stored:
        raise ConfigError(f"{ckpt}: not a pre-training checkpoint; `diagnose` judges the pretext task of a "
                          f"`mask3d-vit pretrain` run (for fine-tuning runs use `mask3d-vit eval`)")
    cfg = load_config(PretrainConfig, None, list(overrides), base=stored)
    model = Mask3D.from_config(cfg.model)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, ckpt


def diagnose_run(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, batches: int = 4,
                 batch_size: int = 32) -> dict[str, float]:
    """The pretext diagnostics (:mod:`mask3d_vit.eval.pretext`) of a pre-training run on its validation frames."""
    model, cfg, _ = load_pretrain_model(path, overrides)
    if not model.predicts_depth:
        raise ConfigError(f"{path}: objective {cfg.model.objective!r} predicts no depth; nothing to diagnose")
    val_set = build_dataset(cfg.data, split="val", train=False)
    n = min(len(val_set), batches * batch_size)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, range(n)), batch_size=batch_size)
    return diagnose(model, loader)


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


def _main(args: argparse.Namespace) -> None:
    run_command(args, PretrainConfig, run_pretrain, shown=_headline)


def _headline(key: str) -> bool:
    """Summary keys: losses and the headline diagnostics; the loss of every patch category stays in metrics.jsonl."""
    return not key.endswith(("_swapped", "_interp")) and not any(f"val_loss_{c}" in key for c in CATEGORIES)


def _diagnose_main(args: argparse.Namespace) -> None:
    metrics = diagnose_run(args.run, args.overrides, batches=args.batches, batch_size=args.batch_size)
    print(f"pretext diagnostics of {args.run} ({args.batches} validation batches of {args.batch_size}):")
    print(format_diagnostics(metrics), flush=True)
