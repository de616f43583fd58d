"""``mask3d-vit config``: the packaged recipes per task, and a recipe's resolved config without running it.

::

    mask3d-vit config list                                              # recipes per task, with their first line
    mask3d-vit config show pretrain_synth_tiny data.sources.0.num_frames=100 train.epochs=2
    mask3d-vit config show my_recipe.yaml --task seg                    # a recipe of your own: name its task

A recipe's task comes from the command its header comment names (``# ... mask3d-vit finetune seg ...``), the same
declaration that tells ``pretrain --config finetune_synth_seg`` which command to suggest;
``show`` resolves it exactly as the training command would (dataclass defaults <- recipe <- overrides, with the
overrides that command adds itself, such as ``task=seg``), so a typo or a bad value fails here, before a run.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import RECIPES_DIR, ConfigError, load_config, recipe_command, resolve_recipe, to_dict
from .tasks.registry import TASKS, resolve


@dataclass(frozen=True)
class RecipeKind:
    """What a recipe configures and which command runs it.

    Attributes:
        task: the name ``--task`` and ``config list`` use (``pretrain``, ``seg``, ``probe-depth``...).
        command: how a recipe of this kind runs; ``{recipe}`` stands for its name.
        config_class: its typed config: the class or ``module:Class``.
        overrides: the ``key=value`` overrides the command adds before the user's.
    """
    task: str
    command: str
    config_class: object
    overrides: tuple[str, ...] = ()

    def load(self, recipe: str | Path, overrides: list[str] = ()):
        """The resolved config of ``recipe`` with ``overrides``, as :attr:`command` builds it."""
        return load_config(resolve(self.config_class), recipe, list(self.overrides) + list(overrides))


_COMPARE = "mask3d_vit.tasks.compare:CompareConfig"
# In `config list` order: the registered tasks, then the comparisons.
KINDS = {kind.task: kind for kind in (
    *(RecipeKind(t.name, f"mask3d-vit {' '.join(t.command)} --config {{recipe}}", t.config, t.overrides)
      for t in TASKS.values()),
    RecipeKind("demo", "mask3d-vit demo", _COMPARE),
    RecipeKind("transfer", "python benchmarks/transfer.py --config {recipe}", _COMPARE),
    RecipeKind("ablation", "python benchmarks/ablations.py --config {recipe}", _COMPARE),
)}


def recipe_kind(recipe: str | Path) -> RecipeKind | None:
    """The kind of a recipe, from the command its header comment names (:func:`~mask3d_vit.config.recipe_command`,
    the one declaration ``pretrain --config <a fine-tuning recipe>`` also reads); None when the header names none."""
    command = recipe_command(recipe)
    return next((kind for kind in KINDS.values() if kind.command.split(" --config")[0] == command), None)


def describe(path: Path, width: int = 100) -> str:
    """The first sentence of a recipe's leading comment, cut to ``width`` characters ("" without a comment)."""
    words = []
    for line in path.read_text().splitlines():
        if not line.startswith("#") or line.startswith("#  "):  # indented comment lines are example commands
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    text = text[:text.index(". ") + 1] if ". " in text else text
    return text if len(text) <= width else text[:width - 3].rstrip() + "..."


def list_recipes() -> str:
    """The packaged recipes grouped by task, each with its description line."""
    groups: dict[str, list[Path]] = {task: [] for task in KINDS}
    other = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        kind = recipe_kind(path)
        (groups[kind.task] if kind else other).append(path)
    width = max(len(p.stem) for p in RECIPES_DIR.glob("*.yaml"))
    lines = []
    for task, paths in groups.items():
        if paths:
            lines.append(f"{task}  ({KINDS[task].command.format(recipe='NAME')})")
            lines += [f"  {p.stem:<{width}}  {describe(p)}" for p in paths]
    if other:
        lines.append("other (config show NAME --task TASK)")
        lines += [f"  {p.stem:<{width}}  {describe(p)}" for p in other]
    return "\n".join(lines)


def show_config(recipe: str, overrides: list[str] = (), task: str | None = None) -> str:
    """The resolved config of ``recipe`` as YAML, headed by a comment naming the command that runs it.

    Args:
        recipe: a packaged recipe name or a YAML path.
        overrides: ``key=value`` overrides, as on a training command line.
        task: one of :data:`KINDS`; None = read from the recipe's header comment.
    """
    path = resolve_recipe(recipe)
    if task is None:
        kind = recipe_kind(path)
        if kind is None:
            raise ConfigError(f"config show {recipe}: cannot tell the task: its header comment names no command "
                              f"(e.g. '# mask3d-vit finetune seg ...'); pass --task ({', '.join(KINDS)})")
    elif task not in KINDS:
        raise ConfigError(f"--task {task}: choose one of {', '.join(KINDS)}")
    else:
        kind = KINDS[task]
    cfg = kind.load(path, overrides)
    header = f"# {kind.command.format(recipe=recipe)}" + "".join(f" {o}" for o in overrides)
    return header + "\n" + yaml.safe_dump(to_dict(cfg), sort_keys=False)


def _list_main(args: argparse.Namespace) -> None:
    print(list_recipes())


def _show_main(args: argparse.Namespace) -> None:
    print(show_config(args.recipe, args.overrides, args.task), end="")
