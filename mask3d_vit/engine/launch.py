"""Shared command-line plumbing for every training command (pretrain, finetune, probe).

``mask3d-vit <task> [--config RECIPE] [--out RUN_DIR] [--resume auto|PATH] [--init-from WEIGHTS] [key=value ...]``

``--resume`` continues a run exactly where it stopped (weights, optimizer, step, RNG); ``--init-from`` starts a
new run from weights only. They are separate on purpose: mixing them up is the classic way to lose a run.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable

from ..checkpoint import CKPT_DIR, list_checkpoints
from ..config import load_config, load_yaml, resolve_recipe, save_config
from . import distributed as D
from .trainer import TrainingInterrupted

CONFIG_FILE = "config.yaml"


def setup_run(args: argparse.Namespace, config_cls):
    """Resolve the config and run dir, join the process group, and write ``config.yaml`` (rank 0).

    On ``--resume`` the run's own config.yaml is the base, so a resumed run trains with the settings it started
    with unless overridden. Returns ``(cfg, run_dir)``.
    """
    run_dir = Path(args.out or Path("runs") / resolve_recipe(args.config).stem)
    saved = run_dir / CONFIG_FILE
    base = load_yaml(saved) if args.resume and saved.is_file() else None
    recipe = None if base is not None else args.config
    cfg = load_config(config_cls, recipe, args.overrides, base=base)
    if args.init_from:
        if not Path(args.init_from).exists():
            raise FileNotFoundError(f"--init-from {args.init_from}: no such file or run directory")
        cfg.init_from = str(args.init_from)
    if not args.resume and list_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass --resume auto to continue that run, or "
                              f"--out NEW_DIR to start another")
    D.init_distributed(cfg.train.device)
    logging.basicConfig(level=logging.INFO if D.is_main() else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if D.is_main():
        save_config(cfg, saved)
    return cfg, run_dir


def run_command(args: argparse.Namespace, config_cls, run: Callable[..., dict],
                shown: Callable[[str], bool] = lambda key: True) -> None:
    """The body of every training command: set up the run, ``run(cfg, run_dir, resume=...)``, print a summary of
    the returned metrics (the keys ``shown`` accepts) on rank 0, and leave the process group."""
    cfg, run_dir = setup_run(args, config_cls)
    try:
        result = run(cfg, run_dir, resume=args.resume)
    except TrainingInterrupted as stop:
        if D.is_main():
            print(f"stopped by {signal.Signals(stop.signum).name} at step {stop.step}; checkpoint saved in "
                  f"{run_dir / CKPT_DIR}. Resume with:\n  {resume_command(command_words(args), run_dir)}", flush=True)
        D.cleanup()
        sys.exit(128 + stop.signum)  # the shell convention for "killed by this signal"
    if D.is_main():
        summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items()) if shown(k))
        print(f"done: {run_dir} ({summary})", flush=True)
    D.cleanup()


def command_words(args: argparse.Namespace) -> list[str]:
    """The subcommand that parsed ``args``: ``["pretrain"]``, ``["finetune", "seg"]``, ``["probe", "depth"]``..."""
    return [args.command, *([args.task] if getattr(args, "task", None) else [])]


def resume_command(command: list[str], run_dir: Path) -> str:
    """The command line that continues the run in ``run_dir`` (its config.yaml holds every setting).

    Args:
        command: the training subcommand's words (:func:`command_words`).
        run_dir: the run directory.
    """
    args = [*command, "--out", str(run_dir), "--resume", "auto"]
    if D.get_world_size() > 1:
        return shlex.join(["torchrun", "--nproc_per_node", str(D.get_world_size()), "-m", "mask3d_vit", *args]) \
            + "   (plus your other torchrun options)"
    return shlex.join(["mask3d-vit", *args])
