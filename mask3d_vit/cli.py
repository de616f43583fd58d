"""``mask3d-vit`` (also ``python -m mask3d_vit``): one command, one subcommand per job.

Every subcommand's arguments are defined here and its handler, which lives beside the code it drives, is imported
only when the command runs: the task modules import torch and timm (seconds), which ``--help``, ``<command> --help``
and a mistyped option should not wait for. A command's long description is its module's docstring, read from the
source file without importing the module.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import ConfigError, load_config, parse_override, recipe_command, resolve_recipe
from .data.registry import format_names
from .extras import MissingExtraError
from .tasks.registry import TASKS, Task, resolve

_RAW = argparse.RawDescriptionHelpFormatter


@dataclass(frozen=True)
class Handler:
    """A command's handler, named ``"package.module:function"`` and imported when the command runs.

    Args:
        target: the function, called as ``function(args, **kwargs)`` with the parsed arguments.
        kwargs: fixed keyword arguments (e.g. the task of ``finetune seg``).
    """
    target: str
    kwargs: dict = field(default_factory=dict)

    def resolve(self):
        return resolve(self.target)

    def __call__(self, args: argparse.Namespace):
        preflight(args)
        return self.resolve()(args, **self.kwargs)


# The arguments that name an existing file or run directory, by their attribute: how the error names them.
PATH_ARGUMENTS = {"init_from": "--init-from", "ceiling": "--ceiling", "ckpt": "--ckpt", "run": "RUN",
                  "source": "RUN_OR_CKPT"}


def preflight(args: argparse.Namespace) -> None:
    """Check what needs no torch before a handler imports it (seconds, on a loaded machine): the recipe exists,
    overrides are ``key=value``, and every file or run the arguments name exists (``--resume`` a path, too)."""
    for recipe in (getattr(args, "config", None), getattr(args, "recipe", None)):
        if recipe:
            resolve_recipe(recipe)
    for text in getattr(args, "overrides", None) or ():
        parse_override(text)
    named = {flag: getattr(args, attr, None) for attr, flag in PATH_ARGUMENTS.items()}
    if getattr(args, "resume", None) not in (None, "auto"):
        named["--resume"] = args.resume
    for flag, value in named.items():
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{flag} {value}: no such file or run directory")


def module_doc(module: str) -> str:
    """The docstring of ``module``, read from its source file without importing it (nor torch)."""
    spec = importlib.util.find_spec(module)
    return ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8"))) or ""


def add_run_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    """The options of every training command (see :mod:`mask3d_vit.engine.launch`)."""
    parser.add_argument("--config", default=task.recipe,
                        help=f"YAML recipe: a path or a packaged name (default: {task.recipe})")
    parser.add_argument("--out", default=None, help="run directory (default: runs/<recipe name>)")
    parser.add_argument("--resume", default=None, metavar="auto|PATH",
                        help="continue a run: 'auto' = newest good checkpoint of --out, or a checkpoint/run path")
    parser.add_argument("--init-from", default=None, metavar="WEIGHTS",
                        help="start from weights: an MAE .pth, a timm state dict, an exported .safetensors or a "
                             "run/checkpoint of ours (encoder only)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.base_lr=1e-3")


def _add_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="pre-train and transfer on SynthRooms end to end; print the comparison",
                              description=module_doc("mask3d_vit.demo"), formatter_class=_RAW)
    p.add_argument("--out", default=None, help="output folder (default: runs/demo-<time>)")
    p.add_argument("--quick", action="store_true", help="smaller settings, about 2 minutes")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. pretrain.train.epochs=30 seg.train.epochs=5")
    p.set_defaults(func=Handler("mask3d_vit.demo:_main"))


def parse_size(text: str) -> tuple[int, int]:
    """``"120x160"`` -> (120, 160), i.e. (H, W); raises :class:`argparse.ArgumentTypeError` on anything else."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected HxW with positive integers (height x width), e.g. 120x160; "
                                         f"got {text!r}")
    return int(parts[0]), int(parts[1])


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return int(text)
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _add_synth(subparsers) -> None:
    """``mask3d-vit synth --out DIR [--num N] [--size HxW] [--seed S] [--no-noise] [--no-holes] [--val-fraction F]
    [--workers W] [KEY=VALUE ...]``; ``KEY=VALUE`` set any other SynthRoomsConfig field (e.g.
    ``num_furniture=[2,5]``)."""
    p = subparsers.add_parser(
        "synth", help="render SynthRooms RGB-D frames into a frames folder",
        description="Render procedural indoor RGB-D frames (NYU13 labels, instances) into a frames folder that "
                    "FramesDataset and the training commands read. Re-running resumes or extends a folder.")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--num", type=_int_at_least(1), default=1000, metavar="N", help="number of frames (default 1000)")
    p.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                   help="frame size, height x width (default 120x160)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, metavar="S", help="stream seed (default 0)")
    p.add_argument("--no-noise", action="store_true", help="exact depth: no sensor noise")
    p.add_argument("--no-holes", action="store_true", help="no depth holes (edges, grazing angles, patches)")
    p.add_argument("--val-fraction", type=_fraction, default=0.1, metavar="F",
                   help="share of frames in val.txt (default 0.1)")
    p.add_argument("--workers", type=_int_at_least(1), default=1, metavar="W",
                   help="processes rendering at once (default 1; up to the CPU cores)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="other SynthRoomsConfig fields")
    p.set_defaults(func=Handler("mask3d_vit.cli:_synth_main"))


def _synth_main(args: argparse.Namespace) -> None:
    # Only the command-line glue lives here; the generator (imported now, it needs torch) stays a library.
    from .data.synthrooms import SynthRoomsConfig, write_synthrooms

    cfg = load_config(SynthRoomsConfig, overrides=args.overrides)
    cfg = dataclasses.replace(cfg, size=args.size or cfg.size, sensor_noise=cfg.sensor_noise and not args.no_noise,
                              holes=cfg.holes and not args.no_holes)
    root = write_synthrooms(args.out, args.num, seed=args.seed, cfg=cfg, val_fraction=args.val_fraction,
                            workers=args.workers)
    print(f"wrote {args.num} SynthRooms frames ({cfg.size[0]}x{cfg.size[1]}, seed {args.seed}) to {root}")


def _source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="an option of the format, as in a recipe's data source, e.g. --option class_set=nyu13 "
                             "(repeatable)")
    parser.add_argument("--depth-scale", type=float, default=0.0,
                        help="stored depth units per metre (1000 = mm, 5000 = TUM, 10000 = 0.1 mm); "
                             "default: the format's own")
    parser.add_argument("--class-set", default=None, help="nyuv2 only: nyu40 (default) or nyu13")
    parser.add_argument("--raw-depth", action="store_true",
                        help="nyuv2 / sunrgbd: raw sensor depth (with holes) instead of the filled maps")
    parser.add_argument("--frame-skip", type=int, default=None, help="scannet: keep every N-th frame (default 25)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_data(subparsers) -> None:
    """``mask3d-vit data {convert,check,pack}``: the command-line face of :mod:`.data.convert`, :mod:`.data.check`
    and :mod:`.data.packed`::

        mask3d-vit data check nyu_depth_v2_labeled.mat
        mask3d-vit data convert nyuv2 nyu_depth_v2_labeled.mat --out data/nyuv2 --class-set nyu13
        mask3d-vit data convert scannet scans/ --out data/scannet --frame-skip 25 --skip-bad
        mask3d-vit data convert frames captures/ --out data/captures_labelled --labelled-only
        mask3d-vit data check data/scannet --split train
        mask3d-vit data pack data/scannet --out data/scannet_packed
    """
    data = subparsers.add_parser("data", help="convert and check RGB-D datasets",
                                 description="Convert datasets to the frames-folder layout and check them.")
    commands = data.add_subparsers(dest="data_command", required=True)

    convert = commands.add_parser("convert", help="write a source as a frames folder (resumable)")
    convert.add_argument("format", choices=format_names())
    convert.add_argument("path", help="dataset folder or file (.mat, .sens)")
    convert.add_argument("--out", required=True, help="output frames folder")
    convert.add_argument("--splits", default="",
                         help="comma-separated splits to convert (default: the format's official ones that the "
                              "source has; 'all' = every frame)")
    convert.add_argument("--labelled-only", action="store_true",
                         help="write only the frames that have a label map (fine-tuning on partly labelled data)")
    convert.add_argument("--skip-bad", action="store_true", help="log and skip unreadable frames")
    _source_options(convert)
    convert.set_defaults(func=Handler("mask3d_vit.data.convert:run_convert"))

    check = commands.add_parser("check", help="report counts, depth units, holes, classes and every bad file")
    check.add_argument("path", help="dataset folder or file")
    check.add_argument("--format", choices=format_names(), default=None, help="default: guessed from the files")
    check.add_argument("--split", default="all", help="split to check (default: every frame)")
    check.add_argument("--limit", type=int, default=None, help="check only the first N frames")
    _source_options(check)
    check.set_defaults(func=Handler("mask3d_vit.data.check:run_check"))

    pack = commands.add_parser("pack", help="write a source pre-resized into litdata shards (format: packed)")
    pack.add_argument("path", help="dataset folder or file of any format (.mat, .sens, a frames folder...)")
    pack.add_argument("--out", required=True, help="new folder of the packed store")
    pack.add_argument("--format", choices=format_names(), default=None, help="default: guessed from the files")
    pack.add_argument("--size", default="392x523", metavar="HxW",
                      help="frames are shrunk to cover HxW (aspect kept, never enlarged); the default keeps every "
                           "random crop of pre-training at 240x320 from being upsampled")
    pack.add_argument("--splits", default="", help="comma-separated splits to pack (default: the format's official "
                      "ones that the source has; 'all' = every frame)")
    pack.add_argument("--labelled-only", action="store_true", help="pack only the frames that have a label map")
    pack.add_argument("--quality", type=int, default=95, help="JPEG quality of the colour images")
    pack.add_argument("--skip-bad", action="store_true", help="log and skip unreadable frames")
    _source_options(pack)
    pack.set_defaults(func=Handler("mask3d_vit.data.packed:run_pack"))


def add_probe_arguments(parser: argparse.ArgumentParser, task: Task) -> None:
    """The options of ``probe seg|depth``."""
    parser.add_argument("--config", default=task.recipe,
                        help=f"YAML recipe: a path or a packaged name (default: {task.recipe})")
    parser.add_argument("--out", default=None, help="folder for probe.json/.md (default: runs/<recipe name>)")
    parser.add_argument("--init-from", default=None, metavar="WEIGHTS",
                        help="encoder weights: an MAE .pth, a timm state dict, an exported .safetensors or folder, "
                             "or a run/checkpoint of ours (default: a randomly initialised encoder)")
    parser.add_argument("--ceiling", default=None, metavar="RUN",
                        help=f"a supervised run of the same encoder (mask3d-vit finetune {task.command[-1]} ...) or "
                             f"its eval_<split>.json, printed as the ceiling")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. data.sources=[...] holdout_every=0 ridges=[0.001]")


# Commands that group several tasks (`finetune seg`, `probe depth`): their own help line and description.
TASK_GROUPS = {
    "finetune": ("fine-tune a pre-trained ViT with a dense head", "mask3d_vit.tasks.finetune"),
    "probe": ("closed-form linear probe of a frozen ViT, printed beside its floors", "mask3d_vit.tasks.finetune"),
}


def _add_task(parser: argparse.ArgumentParser, task: Task) -> None:
    resolve(task.arguments)(parser, task)
    parser.set_defaults(func=Handler(task.main, {"task": task.name}))


def add_task_commands(subparsers, first: str) -> None:
    """The commands of the registered tasks whose command starts with ``first`` (e.g. ``finetune``), in
    registration order."""
    tasks = [t for t in TASKS.values() if t.command[0] == first]
    if len(tasks) == 1 and len(tasks[0].command) == 1:
        task = tasks[0]
        _add_task(subparsers.add_parser(first, help=task.help, description=module_doc(task.doc) if task.doc else None,
                                        formatter_class=_RAW), task)
        return
    what, doc = TASK_GROUPS.get(first, (f"{first} tasks", ""))
    group = subparsers.add_parser(first, help=what, description=module_doc(doc) if doc else None,
                                  formatter_class=_RAW).add_subparsers(dest="task", metavar="TASK", required=True)
    for task in tasks:
        if len(task.command) != 2:
            raise ValueError(f"task {task.name!r}: command {task.command} must be `{first} NAME`, since other tasks "
                             f"run as `{first} NAME`")
        _add_task(group.add_parser(task.command[1], help=task.help,
                                   description=module_doc(task.doc) if task.doc else None, formatter_class=_RAW),
                  task)


def _add_diagnose(subparsers) -> None:
    p = subparsers.add_parser("diagnose", help="does a pre-trained decoder use colour? (rgb_reliance, "
                              "vs_interpolation)", description=module_doc("mask3d_vit.eval.pretext"),
                              formatter_class=_RAW)
    p.add_argument("run", help="pre-training run directory or checkpoint file")
    p.add_argument("--batches", type=int, default=4, help="validation batches to score (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per batch, >= 2 (default 32)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="changes to the stored config, e.g. data.*")
    p.set_defaults(func=Handler("mask3d_vit.tasks.pretrain:_diagnose_main"))


def _add_eval(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a fine-tuned run (mIoU table, depth metrics or AP table)",
                              description=module_doc("mask3d_vit.tasks.finetune"), formatter_class=_RAW)
    p.add_argument("--ckpt", required=True, help="fine-tuning run directory or checkpoint file")
    p.add_argument("--out", default=None, help="folder for eval_<split>.json/.md and the settings used "
                   "(default: <run>/evals/<checkpoint name>; the run's own eval_<split>.json is kept)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="evaluation overrides, e.g. eval.split=test eval.window=128 data.val_sources=...")
    p.set_defaults(func=Handler("mask3d_vit.tasks.train:eval_main"))


def _add_predict(subparsers) -> None:
    p = subparsers.add_parser("predict", help="segment images, estimate their depth or detect objects with a "
                              "fine-tuned model", description=module_doc("mask3d_vit.tasks.predict"),
                              formatter_class=_RAW)
    p.add_argument("--ckpt", required=True, help="fine-tuning run directory or checkpoint file (seg, depth or det)")
    p.add_argument("--image", required=True, nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="input images (PNG, JPEG...) and/or folders of them")
    p.add_argument("--out", required=True, type=Path,
                   help="output PNG (one image), or a folder for <image name>_<task>.png per input")
    p.add_argument("--raw-out", default=None, type=Path,
                   help="also write class ids (8-bit PNG) or depth in mm (16-bit PNG): a file, or a folder")
    resolution = p.add_mutually_exclusive_group()
    resolution.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                            help="resize images to H x W for the model (default: the model's training size)")
    resolution.add_argument("--native", action="store_true",
                            help="run at each image's own size instead of the training size")
    p.add_argument("--window", type=int, default=0,
                   help="sliding-window side in pixels (default: whole image, or the training size when the "
                        "aspect ratio differs from training)")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="detection: draw instances scoring at least this (default 0.5)")
    p.add_argument("--alpha", type=float, default=0.6, help="overlay opacity of the class colours")
    p.set_defaults(func=Handler("mask3d_vit.tasks.predict:_main"))


def _add_export(subparsers) -> None:
    """``mask3d-vit export RUN_OR_CKPT --out FOLDER/|FILE.safetensors`` (see :mod:`mask3d_vit.models.weights`)."""
    p = subparsers.add_parser(
        "export", help="write the RGB encoder of a run as a timm-compatible backbone (folder or .safetensors)",
        description="Write the colour encoder of a run, pre-training or fine-tuning (its newest loadable "
                    "checkpoint, or the given checkpoint file) alone, with timm key names. --out FOLDER/ writes "
                    "model.safetensors + config.json (the Hugging Face hub layout): "
                    "timm.create_model('local-dir:FOLDER', pretrained=True). --out FILE.safetensors writes the "
                    "weights alone: timm.create_model(<metadata timm_model>, pretrained=True, num_classes=0, "
                    "pretrained_cfg_overlay=dict(file=FILE, input_size=(3, H, W))). Either way, normalise inputs "
                    "with ImageNet mean/std.")
    p.add_argument("source", metavar="RUN_OR_CKPT", help="run directory (newest checkpoint) or checkpoint file")
    p.add_argument("--out", required=True, type=Path, metavar="FOLDER/|FILE.safetensors",
                   help="a folder for timm's local-dir: loader (config.json + model.safetensors), or one "
                        ".safetensors file")
    p.set_defaults(func=Handler("mask3d_vit.models.weights:_run_export"))


def _add_config(subparsers) -> None:
    """``config list`` and ``config show RECIPE [overrides] [--task T]`` (see :mod:`mask3d_vit.recipes`)."""
    from .recipes import KINDS  # yaml and the config module only: no torch

    p = subparsers.add_parser("config", help="list the packaged recipes, or print a resolved config",
                              description=module_doc("mask3d_vit.recipes"), formatter_class=_RAW)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the packaged recipes per task").set_defaults(
        func=Handler("mask3d_vit.recipes:_list_main"))
    show = actions.add_parser("show", help="the resolved config of a recipe with overrides, without running it")
    show.add_argument("recipe", metavar="RECIPE", help="a packaged recipe name or a YAML path")
    show.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=2")
    show.add_argument("--task", choices=list(KINDS), default=None,
                      help="what the recipe configures (default: read from a packaged recipe's name)")
    show.set_defaults(func=Handler("mask3d_vit.recipes:_show_main"))


def _tasks(first: str):
    return lambda subparsers: add_task_commands(subparsers, first)


# The order is the order of `mask3d-vit --help`; tasks under another first word follow at the end.
COMMANDS = (_add_demo, _add_synth, _add_data, _tasks("pretrain"), _add_diagnose, _tasks("finetune"), _tasks("probe"),
            _add_eval, _add_predict, _add_export, _add_config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mask3d-vit", description="Mask3D: masked 3D priors for 2D ViTs "
                                     "(Hou et al., CVPR 2023) - pre-train, fine-tune, evaluate, export.")
    parser.add_argument("--version", action="version", version=f"mask3d-vit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    for first in dict.fromkeys(t.command[0] for t in TASKS.values()):
        if first not in subparsers.choices:
            add_task_commands(subparsers, first)
    return parser


def recipe_mismatch(args: argparse.Namespace) -> str | None:
    """When ``--config`` names a recipe written for another command (the usual cause of an unknown-key error, e.g.
    ``pretrain --config finetune_synth_seg``): what to run instead. None when the recipe fits the command."""
    recipe = getattr(args, "config", None)
    if not recipe:
        return None
    try:
        intended = recipe_command(recipe)
    except ConfigError:
        return None
    typed = " ".join(["mask3d-vit", args.command] + ([args.task] if getattr(args, "task", None) else []))
    if intended is None or intended == typed:
        return None
    trains = intended.split()[1] in ("pretrain", "finetune", "probe")
    run = f"{intended} --config {recipe} [--out DIR ...]" if trains else intended
    return f"{recipe} is a recipe for `{intended}`, not for `{typed}`; run: {run}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, MissingExtraError) as e:
        # Bad input, unusable files and a missing optional package end in one readable line; MASK3D_DEBUG=1 shows
        # the traceback instead.
        if os.environ.get("MASK3D_DEBUG"):
            raise
        message = (isinstance(e, ConfigError) and recipe_mismatch(args)) or str(e)
        print(f"mask3d-vit {args.command}: error: {message}", file=sys.stderr)
        return 1
    return code or 0
