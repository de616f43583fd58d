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

from ..config import MISSING, ConfigError, load_config, lookup, parse_override, save_config, to_dict
from ..data.build import build_dataset
from ..data.transforms import apply_deferred_jitter
from ..engine import distributed as D
from ..checkpoint import CKPT_DIR, load_latest
from ..engine.data import seed_all
from ..engine.launch import command_words, resumed_config, run_command, run_dir_of
from ..engine.trainer import CONFIG_FILE, Trainer
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
    if D.is_main():
        params = sum(p.numel() for p in model.parameters())
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        encoder = getattr(getattr(cfg, "model", None), "encoder", "")
        print(f"model: {type(model).__name__}{f' ({encoder})' if encoder else ''}, {params / 1e6:.2f} M parameters"
              f"{f' ({trained / 1e6:.2f} M trained)' if trained != params else ''}", flush=True)
    data = task.part("train_data")(cfg)
    if D.is_main() and hasattr(cfg, "data"):
        sources = ", ".join(s.format + (f" {s.root}" if s.root else "") for s in cfg.data.sources)
        print(f"data: {len(data.dataset)} training frames at {cfg.data.size[0]}x{cfg.data.size[1]} from {sources}",
              flush=True)
    device = D.init_distributed(cfg.train.device)
    evaluator = task.part("evaluator")(cfg, device=device, out_dir=run_dir) if task.evaluator else None
    visualizer = task.part("figures")(cfg) if task.figures else None
    trainer = Trainer(model, data.dataset, train=cfg.train, optim=cfg.optim, run_dir=run_dir, config=to_dict(cfg),
                      evaluator=evaluator, visualizer=visualizer, collate_fn=data.collate_fn,
                      batch_transform=apply_deferred_jitter)
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
    check_resumable(args, spec)
    run_command(args, spec.part("config"), lambda cfg, run_dir, resume: train_task(spec, cfg, run_dir, resume=resume),
                **({"shown": spec.part("shown")} if spec.shown else {}))


# What a checkpoint's weights are shaped by: a resumed run cannot change them.
FIXED_ON_RESUME = ("task", "model", "class_set")


def check_resumable(args: argparse.Namespace, task: Task) -> None:
    """Refuse, in one line and before anything is built or written, a ``--resume`` that cannot continue the run:
    the run is another task's, or an override contradicts a key of :data:`FIXED_ON_RESUME` of its saved config.

    Args:
        args: the training command's arguments (overrides already headed by the task's own).
        task: the task the command runs.
    """
    saved = resumed_config(args)
    if saved is None:
        return
    run_dir = run_dir_of(args)
    typed = "mask3d-vit " + " ".join(command_words(args))
    theirs = task_of_config(saved)
    if theirs.name != task.name:
        raise ConfigError(f"{run_dir} is a run of task {theirs.name!r} (mask3d-vit {' '.join(theirs.command)}), not "
                          f"of task {task.name!r} that `{typed}` trains; continue it with `mask3d-vit "
                          f"{' '.join(theirs.command)} --out {run_dir} --resume auto`, or start a {task.name} run from "
                          f"its weights with `{typed} --out NEW_DIR --init-from {run_dir}`")
    contradicted = []
    for text in args.overrides:
        keys, value = parse_override(text)
        node = lookup(saved, ".".join(keys))
        if keys[0] in FIXED_ON_RESUME and node is not MISSING and node != value:
            contradicted.append(f"{'.'.join(keys)}={value} (the run has {node})")
    if contradicted:
        raise ConfigError(f"--resume: {', '.join(contradicted)}: a resumed run keeps its {'/'.join(FIXED_ON_RESUME)}"
                          f" ({run_dir / CONFIG_FILE}); drop the override(s), or start a new run from its weights "
                          f"with `{typed} --out NEW_DIR --init-from {run_dir}`")


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
    # By default beside the run, in a folder named by the checkpoint: the run's own eval_<split>.json (its final
    # evaluation) is kept, and the settings this evaluation used are saved with its result.
    run_dir = ckpt.parent.parent if ckpt.parent.name == CKPT_DIR else ckpt.parent
    out_dir = Path(args.out) if args.out else run_dir / "evals" / ckpt.stem
    evaluator = task.part("evaluator")(cfg, device=device, out_dir=out_dir)
    with torch.no_grad():
        metrics = evaluator(model.to(device))
    if D.is_main():
        print(f"{ckpt} on split {cfg.eval.split!r}:")
        print(evaluator.table or "\n".join(f"  {k}: {v:.4g}" for k, v in metrics.items()), flush=True)
        save_config(cfg, out_dir / "eval_config.yaml")
        print(f"wrote {out_dir / f'eval_{cfg.eval.split}.json'} (settings: {out_dir / 'eval_config.yaml'})",
              flush=True)
    D.cleanup()
