"""The task registry: what each task is made of, declared in one place.

A task (pre-training, fine-tuning seg / depth / det, a probe) is one :class:`Task`: its command, config class,
model builder, evaluator (classes under :mod:`mask3d_vit.eval`), figures (:mod:`mask3d_vit.viz`) and predict
renderer. The CLI builds the task subcommands from :data:`TASKS`, the generic trainer
(:func:`mask3d_vit.tasks.train.train_task`) runs a training task from its parts, ``eval`` and ``predict`` read a
checkpoint's task from its stored config and look it up here. Adding a task is its module plus one line::

    register(Task("toy", command=("finetune", "toy"), help="a toy task", recipe="toy.yaml", config=ToyConfig,
                  model=build_toy_model, evaluator=build_toy_evaluator))

Each part is the object itself or a ``"package.module:name"`` string imported on first use: the built-in tasks
name theirs, so that ``mask3d-vit --help`` imports neither torch nor a task module.

The parts, each called with the run config ``cfg`` (an instance of ``config``: a dataclass with ``train`` and
``optim`` sections, ``init_from`` (set by ``--init-from``) and a ``task`` field holding the task's name, which tells
``predict`` and ``eval`` whose checkpoint they hold; pre-training's config has none, as its checkpoints never had):

- ``model(cfg, *, load_init=True) -> nn.Module``: a model whose ``model(batch)`` returns ``{"loss": ...}`` in
  training; ``load_init=False`` skips ``cfg.init_from`` (weights restored from a checkpoint).
- ``train_data(cfg) -> TrainData``: the training set and its collate (default
  :func:`mask3d_vit.tasks.train.default_train_data`).
- ``evaluator(cfg, *, device, out_dir) -> evaluator | None``: ``evaluator(model) -> dict[str, float]``, run on every
  rank; an evaluator with a non-empty ``table`` attribute has it printed at the end.
- ``figures(cfg) -> visualizer | None``: ``visualizer(model, batch, path)`` writes a PNG.
- ``prepare(cfg) -> cfg``: fills in what a run reads from its data (e.g. the class set) before anything is built.
- ``predict(model, cfg, args, images)``: ``mask3d-vit predict`` for this task's checkpoints.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

# A part: the object, or "package.module:name" to import on first use.
Ref = Any


def resolve(ref: Ref):
    """The object ``ref`` names (``"package.module:name"``), or ``ref`` itself when it is no such string."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Task:
    """One task's declaration (see the module docstring for the parts' signatures).

    Args:
        name: the registry key, also the ``task`` field of the task's config (pre-training's config has none).
        command: the CLI words that run it, e.g. ``("finetune", "seg")`` or ``("pretrain",)``.
        help: one line for ``--help``.
        recipe: the default ``--config``.
        config: the config dataclass.
        model: the model builder.
        evaluator: the evaluator builder; None = no evaluation.
        figures: the visualizer builder; None = no figures.
        train_data: the training data builder.
        prepare: config completion before a run; None = none.
        predict: the ``predict`` renderer; None = ``predict`` refuses this task's checkpoints.
        overrides: ``key=value`` the command sets before the user's (e.g. ``task=seg``).
        doc: the module whose docstring is the command's long description.
        shown: which metric keys the end-of-run summary prints (None = all).
        main: the command's handler, ``main(args, task=name)``; the default trains through the generic trainer.
        arguments: adds the command's options to its parser, ``arguments(parser, task)``.
    """
    name: str
    command: tuple[str, ...]
    help: str
    recipe: str
    config: Ref
    model: Ref
    evaluator: Ref = None
    figures: Ref = None
    train_data: Ref = "mask3d_vit.tasks.train:default_train_data"
    prepare: Ref = None
    predict: Ref = None
    overrides: tuple[str, ...] = ()
    doc: str = ""
    shown: Ref = None
    main: str = "mask3d_vit.tasks.train:train_main"
    arguments: Ref = "mask3d_vit.cli:add_run_arguments"

    def part(self, name: str):
        """The declared part ``name`` (a field above), imported if it was named by a string."""
        return resolve(getattr(self, name))

    def prepared(self, cfg):
        """``cfg`` completed by :attr:`prepare` (as it is unchanged without one)."""
        return self.part("prepare")(cfg) if self.prepare is not None else cfg


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS`; its name and command must be new."""
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    taken = next((t.name for t in TASKS.values() if t.command == task.command), None)
    if taken:
        raise ValueError(f"task {task.name!r}: `{' '.join(task.command)}` already runs task {taken!r}")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> Task:
    """Remove the task ``name`` from :data:`TASKS` and return it."""
    return TASKS.pop(get_task(name).name)


def get_task(name: str) -> Task:
    """The registered task ``name``; a ValueError lists the registered ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered tasks: {', '.join(TASKS)}")
    return TASKS[name]


def task_of_config(stored: dict) -> Task:
    """The task a run config (as a checkpoint stores it) belongs to: its ``task`` entry, or pre-training for a
    config without one."""
    return get_task(stored.get("task") or "pretrain")


_PRE = "mask3d_vit.tasks.pretrain"
_FT = "mask3d_vit.tasks.finetune"
_DET = "mask3d_vit.tasks.detection"
_PREDICT = "mask3d_vit.tasks.predict"
_FT_WHAT = "fine-tune a pre-trained ViT with a dense head"
_PROBE_WHAT = "closed-form linear probe of a frozen ViT, printed beside its floors"

register(Task("pretrain", ("pretrain",), "pre-train a ViT with the Mask3D (or MAE) objective",
              recipe="pretrain_synth_tiny", config=f"{_PRE}:PretrainConfig", model=f"{_PRE}:build_model",
              evaluator=f"{_PRE}:build_evaluator", figures=f"{_PRE}:build_figures", doc=_PRE,
              shown=f"{_PRE}:headline"))
register(Task("seg", ("finetune", "seg"), f"semantic segmentation: {_FT_WHAT}", recipe="finetune_synth_seg",
              config=f"{_FT}:FinetuneConfig", model=f"{_FT}:build_model", evaluator=f"{_FT}:build_seg_evaluator",
              figures=f"{_FT}:build_seg_figures", train_data=f"{_FT}:build_seg_train_data",
              prepare=f"{_FT}:resolve_class_set", predict=f"{_PREDICT}:predict_seg", overrides=("task=seg",),
              doc=_FT, shown=f"{_FT}:shown"))
register(Task("depth", ("finetune", "depth"), f"depth estimation: {_FT_WHAT}", recipe="finetune_synth_depth",
              config=f"{_FT}:FinetuneConfig", model=f"{_FT}:build_model", evaluator=f"{_FT}:build_depth_evaluator",
              figures=f"{_FT}:build_depth_figures", predict=f"{_PREDICT}:predict_depth", overrides=("task=depth",),
              doc=_FT, shown=f"{_FT}:shown"))
register(Task("det", ("finetune", "det"), "instance segmentation and detection: Mask R-CNN on the ViT",
              recipe="det_synth_tiny", config=f"{_DET}:DetectionConfig", model=f"{_DET}:build_model",
              evaluator=f"{_DET}:build_evaluator", figures=f"{_DET}:build_figures",
              train_data=f"{_DET}:build_train_data", prepare=f"{_DET}:resolve_classes",
              predict=f"{_PREDICT}:predict_det", doc=_DET, shown=f"{_DET}:shown"))
for _name, _title in (("seg", "semantic segmentation"), ("depth", "depth estimation")):
    register(Task(f"probe-{_name}", ("probe", _name), f"{_title}: {_PROBE_WHAT}", recipe=f"probe_synth_{_name}",
                  config=f"{_FT}:ProbeConfig", model=f"{_FT}:build_probe_encoder",
                  evaluator=f"{_FT}:build_probe_evaluator", overrides=(f"task={_name}",), doc=_FT,
                  main=f"{_FT}:probe_main", arguments="mask3d_vit.cli:add_probe_arguments"))
