"""Shared command-line plumbing for every training command (pretrain, finetune, probe).

``mask3d-vit <task> [--config RECIPE] [--out RUN_DIR] [--resume auto|PATH] [--init-from WEIGHTS] [key=value ...]``

``--resume`` continues a run exactly where it stopped (weights, optimizer, step, RNG); ``--init-from`` starts a
new run from weights only. They are separate on purpose: mixing them up is the classic way to lose a run.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

from ..checkpoint import list_checkpoints
from ..config import load_config, load_yaml, resolve_recipe
from . import distributed as D
from .trainer import CONFIG_FILE, TrainingInterrupted


def run_dir_of(args: argparse.Namespace) -> Path:
    """The run directory of a training command: ``--out``, or ``runs/<recipe name>``."""
    return Path(args.out or Path("runs") / resolve_recipe(args.config).stem)


def resumed_config(args: argparse.Namespace) -> dict | None:
    """The saved config of the run that ``--resume`` continues: its ``config.yaml`` when the run has a checkpoint.

    None without ``--resume``, and for a folder without checkpoints: a start that failed before its first step
    left nothing to continue, so its config is not taken over (the command's recipe and overrides are).
    """
    run_dir = run_dir_of(args)
    saved = run_dir / CONFIG_FILE
    if not args.resume or not saved.is_file() or not list_checkpoints(run_dir):
        return None
    return load_yaml(saved)


def setup_run(args: argparse.Namespace, config_cls):
    """Resolve the config and run dir and join the process group. Nothing is written: the trainer writes
    ``config.yaml`` when training starts, so a command that fails before leaves no run behind.

    On ``--resume`` the run's own config.yaml is the base, so a resumed run trains with the settings it started
    with unless overridden. Returns ``(cfg, run_dir)``.
    """
    run_dir = run_dir_of(args)
    base = resumed_config(args)
    recipe = None if base is not None else args.config
    cfg = load_config(config_cls, recipe, args.overrides, base=base)
    if args.init_from:
        cfg.init_from = str(args.init_from)
    if not args.resume and list_checkpoints(run_dir):
        raise FileExistsError(f"{run_dir} already holds checkpoints: pass --resume auto to continue that run, or "
                              f"--out NEW_DIR to start another")
    D.init_distributed(cfg.train.device)
    logging.basicConfig(level=logging.INFO if D.is_main() else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return cfg, run_dir


def run_command(args: argparse.Namespace, config_cls, run: Callable[..., dict],
                shown: Callable[[str], bool] = lambda key: True) -> None:
    """The body of every training command: set up the run, ``run(cfg, run_dir, resume=...)``, print a summary of
    the returned metrics (the keys ``shown`` accepts) on rank 0, and leave the process group."""
    cfg, run_dir = setup_run(args, config_cls)
    with exit_on_stop(resume_command(command_words(args), run_dir)):
        result = run(cfg, run_dir, resume=args.resume)
    if D.is_main():
        summary = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items()) if shown(k))
        print(f"done: {run_dir} ({summary})", flush=True)
    D.cleanup()


@contextlib.contextmanager
def exit_on_stop(command: str) -> Iterator[None]:
    """Within the block, training stopped by SIGTERM or Ctrl-C (:class:`TrainingInterrupted`, its checkpoint saved)
    ends the process with one line naming the step, the checkpoint folder and ``command``, the command line that
    continues, instead of a traceback; the exit status is 128 + the signal's number, the shell's convention.

    Args:
        command: what the user runs to continue (a training command with ``--resume auto``, or the demo again).
    """
    try:
        yield
    except TrainingInterrupted as stop:
        if D.is_main():
            print(f"stopped by {signal.Signals(stop.signum).name} {stop.saved}. Resume with:\n  {command}", flush=True)
        D.cleanup()
        sys.exit(128 + stop.signum)


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
