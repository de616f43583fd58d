"""The generic task runner: a registered task's parts (:mod:`mask3d_vit.tasks.registry`) assembled around the one
Trainer, and the rebuilding of a trained model from its checkpoint.

The order of a run: complete the config (``prepare``), seed, build the model, the training data, the device, the
evaluator and the figures, then train. The device is known before the evaluator is built, so the evaluator gets
it at construction like every other part.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import ConfigError, load_config, to_dict
from ..data.build import build_dataset
from ..engine import distributed as D
from ..checkpoint import CKPT_DIR, load_latest
from ..engine.data import seed_all
from ..engine.launch import run_command
from ..engine.trainer import Trainer
from .registry import TASKS, Task, get_task, task_of_config


@dataclass
class TrainData:
    """A task's training data.

    Args:
        dataset: map-style dataset of sample dicts.
        collate_fn: for batches the default collate cannot build (None = the default).
    """
    dataset: object
    collate_fn: Callable | None = None


def default_train_data(cfg) -> TrainData:
    """The ``train`` split of ``cfg.data``, augmented."""
    return TrainData(build_dataset(cfg.data, split="train", train=True))


def train_task(task: Task | str, cfg, run_dir: str | Path, *, resume: str | None = None) -> dict:
    """Train ``task`` as ``cfg`` says into ``run_dir``.

    Args:
        task: a registered task or its name.
        cfg: the run config (an instance of the task's config class).
        run_dir: the run directory.
        resume: "auto" or a checkpoint/run path to continue from.

    Returns:
        The final logged losses and evaluation metrics (``eval/<metric>``).
    """
    task = get_task(task) if isinstance(task, str) else task
    if getattr(cfg, "task", task.name) != task.name:
        raise ConfigError(f"task={cfg.task!r} in the config, but this runs task {task.name!r}")
    run_dir = Path(run_dir)
    cfg = task.prepared(cfg)
    # Initial weights are loaded even when resuming: a resumed checkpoint overwrites them, and "--resume auto"
    # on a run without checkpoints must start from them.
    seed_all(cfg.train.seed)
    model = task.part("model")(cfg)
    data = task.part("train_data")(cfg)
    device = D.init_distributed(cfg.train.device)
    evaluator = task.part("evaluator")(cfg, device=device, out_dir=run_dir) if task.evaluator else None
    visualizer = task.part("figures")(cfg) if task.figures else None
    trainer = Trainer(model, data.dataset, train=cfg.train, optim=cfg.optim, run_dir=run_dir, config=to_dict(cfg),
                      evaluator=evaluator, visualizer=visualizer, collate_fn=data.collate_fn)
    result = trainer.fit(resume=resume)
    table = getattr(evaluator, "table", "")
    if D.is_main() and table:
        print(table, flush=True)
    return result


def train_main(args: argparse.Namespace, *, task: str) -> None:
    """The handler of a training task's command (``mask3d-vit pretrain``, ``finetune seg``...)."""
    spec = get_task(task)
    # The command fixes what its task needs (e.g. task=seg); later overrides still win.
    args.overrides = list(spec.overrides) + list(args.overrides)
    run_command(args, spec.part("config"), lambda cfg, run_dir, resume: train_task(spec, cfg, run_dir, resume=resume),
                **({"shown": spec.part("shown")} if spec.shown else {}))


def restore(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, expect: tuple[str, ...] = (),
            expected: str = "") -> tuple[Task, object, object, Path]:
    """Rebuild a trained model from a run directory (its newest good checkpoint) or a checkpoint file, reading the
    checkpoint once.

    Args:
        path: run directory or checkpoint.
        overrides: ``key=value`` changes to the stored config (e.g. ``eval.window=128``; not the architecture).
        expect: the task names accepted (empty = any registered task).
        expected: what the error calls a checkpoint of those tasks, e.g. "a fine-tuning checkpoint".

    Returns:
        (the task, the model in eval mode on the CPU, the run config, the checkpoint file used).
    """
    ckpt, state = load_latest(path)
    stored = state.get("config")
    if not isinstance(stored, dict):
        raise ConfigError(f"{ckpt}: holds no run config; not a checkpoint of a mask3d-vit training command")
    task = task_of_config(stored)
    if expect and task.name not in expect:
        raise ConfigError(f"{ckpt}: not {expected or 'a checkpoint of task ' + ' / '.join(expect)} (its task is "
                          f"{task.name!r})")
    cfg = load_config(task.part("config"), None, list(overrides), base=stored)
    model = task.part("model")(cfg, load_init=False)
    model.load_state_dict(state["model"])
    return task, model.eval(), cfg, ckpt


def eval_main(args: argparse.Namespace) -> None:
    """The handler of ``mask3d-vit eval``: re-evaluate a fine-tuned run with its task's evaluator."""
    fine_tuned = tuple(name for name, t in TASKS.items() if t.command[0] == "finetune")
    task, model, cfg, ckpt = restore(args.ckpt, args.overrides, expect=fine_tuned, expected=(
        f"a fine-tuning checkpoint ({', '.join(fine_tuned)})"))
    cfg = task.prepared(cfg)
    device = D.init_distributed(cfg.train.device)
    out_dir = Path(args.out) if args.out else ckpt.parent.parent if ckpt.parent.name == CKPT_DIR else ckpt.parent
    evaluator = task.part("evaluator")(cfg, device=device, out_dir=out_dir)
    with torch.no_grad():
        metrics = evaluator(model.to(device))
    if D.is_main():
        print(f"{ckpt} on split {cfg.eval.split!r}:")
        print(evaluator.table or "\n".join(f"  {k}: {v:.4g}" for k, v in metrics.items()), flush=True)
        print(f"wrote {out_dir / f'eval_{cfg.eval.split}.json'}", flush=True)
    D.cleanup()
