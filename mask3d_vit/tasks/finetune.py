"""``mask3d-vit finetune seg|depth``, ``mask3d-vit probe seg|depth`` and ``mask3d-vit eval``: dense RGB transfer.

The colour ViT of a pre-training run (Mask3D, MAE-RGB), an exported backbone, an ImageNet MAE / timm checkpoint or
nothing (scratch) is fine-tuned for semantic segmentation or depth, or probed frozen: ``probe`` fits the
closed-form linear probe of :mod:`mask3d_vit.eval.probe` on the encoder's final features and prints it beside the
image-blind floors (constant, position only) and, with ``--ceiling``, a supervised run of the same encoder::

    mask3d-vit finetune seg --config finetune_synth_seg --out runs/seg_m3d --init-from runs/m3d
    mask3d-vit probe depth --out runs/depth_probe_m3d --init-from runs/m3d --ceiling runs/depth_ceiling
    mask3d-vit eval --ckpt runs/seg_m3d eval.window=128         # re-evaluate into runs/seg_m3d/evals/step_*/

Several GPUs (``train.batch_size`` stays the global batch)::

    torchrun --nproc_per_node 8 -m mask3d_vit finetune seg --config finetune_nyuv2_seg_base --init-from m3d.safetensors

A fine-tuning run directory holds ``config.yaml``, ``metrics.jsonl``, ``tb/``, ``figures/``, ``checkpoints/`` and the
latest evaluation as ``eval_<split>.json`` (+ ``eval_<split>.md``, the per-class table, for segmentation);
``mask3d-vit eval`` writes its own under ``evals/<checkpoint>/``, with the settings it used (``eval_config.yaml``).
A probe directory holds ``config.yaml``, ``probe.json`` (probe, floors, ceiling, chosen ridge strength) and ``probe.md``
(the printed table).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, load_config, resolve_recipe, save_config
from ..data.build import DataConfig, build_dataset, class_set_of
from ..data.classes import get_class_set
from ..engine import distributed as D
from ..engine.data import seed_all
from ..engine.optim import OptimConfig
from ..engine.trainer import TrainConfig
from ..eval.dense import DenseEvaluator, DepthScore, EvalConfig, SegmentationScore
from ..eval.probe import RIDGES, check_layer, format_report, load_ceiling, load_probe_encoder, probe_backbone
from ..io import write_json, write_text
from ..models.dense import TASKS, DenseModel, DenseModelConfig
from ..viz.dense import DenseFigure
from .registry import get_task
from .train import TrainData, restore, train_task


@dataclass
class FinetuneConfig:
    """A fine-tuning or probe run: task, data, model (backbone + head), loop, optimizer and evaluation."""
    task: str = "seg"             # seg | depth (set by the command)
    data: DataConfig = field(default_factory=DataConfig)
    model: DenseModelConfig = field(default_factory=DenseModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    init_from: str = ""           # backbone weights to start from (set by --init-from); "" = scratch
    class_set: str = ""           # seg: the data's label space, filled in at the start of a run ("" = not yet)


def resolve_class_set(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with ``class_set`` read from its data sources (seg), checked against a value already stored.

    Storing it in the run config lets ``predict`` rebuild the model (head size, names, palette) without the data.
    """
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    if cfg.task != "seg":
        return cfg
    found = class_set_of(cfg.data)
    if cfg.class_set and cfg.class_set != found:
        raise ConfigError(f"class_set={cfg.class_set!r} but the data sources are labelled in {found!r}; a model "
                          f"predicts one label space")
    return dataclasses.replace(cfg, class_set=found)


def build_model(cfg: FinetuneConfig, *, load_init: bool = True) -> DenseModel:
    """The run's model (``cfg.class_set`` resolved for seg); ``load_init=False`` skips ``cfg.init_from`` (for
    weights restored from a checkpoint)."""
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    if cfg.task == "seg" and not cfg.class_set:
        raise ConfigError("segmentation config has no class_set; resolve it from the data (resolve_class_set)")
    num_classes = get_class_set(cfg.class_set).num_classes if cfg.task == "seg" else 0
    init_from = cfg.init_from if load_init and cfg.init_from else None
    return DenseModel.from_config(cfg.model, task=cfg.task, num_classes=num_classes, init_from=init_from)


def build_seg_train_data(cfg: FinetuneConfig) -> TrainData:
    """The augmented ``train`` split, every frame labelled."""
    return TrainData(build_dataset(cfg.data, split="train", train=True, require_labels=True))


def build_seg_evaluator(cfg: FinetuneConfig, *, device: torch.device | str, out_dir: str | Path | None
                        ) -> DenseEvaluator:
    """mIoU, accuracies and the per-class table on the run's ``cfg.eval.split`` split."""
    dataset = build_dataset(cfg.data, split=cfg.eval.split, train=False, require_labels=True)
    return DenseEvaluator(dataset, score=SegmentationScore(get_class_set(cfg.class_set).names), task=cfg.task,
                          cfg=cfg.eval, device=device, out_dir=out_dir)


def build_depth_evaluator(cfg: FinetuneConfig, *, device: torch.device | str, out_dir: str | Path | None
                          ) -> DenseEvaluator:
    """Depth metrics (raw and median-scaled) on the run's ``cfg.eval.split`` split."""
    dataset = build_dataset(cfg.data, split=cfg.eval.split, train=False)
    return DenseEvaluator(dataset, score=DepthScore(min_depth=cfg.eval.min_depth, max_depth=cfg.data.max_depth),
                          task=cfg.task, cfg=cfg.eval, device=device, out_dir=out_dir)


def build_seg_figures(cfg: FinetuneConfig) -> DenseFigure:
    """RGB | labels | prediction rows of validation frames, with a legend of the classes."""
    return DenseFigure(cfg.data, split=cfg.eval.split, class_set=get_class_set(cfg.class_set))


def build_depth_figures(cfg: FinetuneConfig) -> DenseFigure:
    """RGB | depth | prediction rows of validation frames, with one depth colour bar in metres."""
    return DenseFigure(cfg.data, split=cfg.eval.split)


def run_finetune(cfg: FinetuneConfig, run_dir: str | Path, *, init_from: str | None = None,
                 resume: str | None = None) -> dict:
    """Fine-tune as ``cfg`` says into ``run_dir`` (through the registered task ``cfg.task``).

    Args:
        cfg: the run config (``cfg.task`` picks segmentation or depth).
        run_dir: the run directory.
        init_from: backbone weights (a run dir or checkpoint of ours, an exported ``.safetensors``, an MAE
            ``.pth`` or a timm state dict); replaces ``cfg.init_from``. None keeps ``cfg.init_from`` ("" = scratch).
        resume: "auto" or a checkpoint/run path to continue from.

    Returns:
        The final logged losses and evaluation metrics: ``eval/miou``, ``eval/macc``, ``eval/pixel_acc`` and
        ``eval/iou/<class>`` (seg, percent), or ``eval/abs_rel``, ``eval/rmse``, ``eval/log10``,
        ``eval/delta1..3`` (percent) and the same with ``_med`` (median-scaled) (depth).
    """
    if init_from is not None:
        cfg = dataclasses.replace(cfg, init_from=str(init_from))
    return train_task(cfg.task, cfg, run_dir, resume=resume)


def load_dense_model(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                     ) -> tuple[DenseModel, FinetuneConfig, Path]:
    """Rebuild a fine-tuned model from a run directory (its newest good checkpoint) or a checkpoint file.

    Args:
        path: run directory or checkpoint.
        overrides: ``key=value`` changes to the stored config (e.g. ``eval.window=128``; not the architecture).

    Returns:
        (model in eval mode on the CPU, the run config, the checkpoint file used).
    """
    _, model, cfg, ckpt = restore(path, overrides, expect=TASKS, expected=(
        "a fine-tuning checkpoint; for pre-training runs use --init-from with finetune/probe"))
    return model, cfg, ckpt


def shown(key: str) -> bool:
    """Summary keys: everything but the per-class IoUs (they stay in metrics.jsonl and eval_<split>.md)."""
    return "/iou/" not in key


@dataclass
class ProbeConfig:
    """A closed-form frozen-feature probe (see :mod:`mask3d_vit.eval.probe`): data, encoder, fit and evaluation.

    Training frames are read with the evaluation transform (no augmentation): the position-only floor is fit on
    them, and a probe of frozen features gains nothing from crops it sees once.
    """
    task: str = "depth"            # seg | depth (set by the command)
    data: DataConfig = field(default_factory=DataConfig)
    encoder: str = "vit_tiny_patch16"
    # The nominal size loaded position embeddings are resampled to; follows data.size unless set.
    img_size: tuple[int, int] = field(default=(128, 128), metadata={"follows": "data.size"})
    batch_size: int = 32
    device: str = "auto"           # auto | cpu | cuda
    seed: int = 0                  # the random initialisation of a scratch encoder
    cells: int = 4                 # output cells per patch side (4 at patch 16: a stride-4 prediction grid)
    holdout_every: int = 5         # every n-th training frame is held out to choose the ridge strength
    ridges: list[float] = field(default_factory=lambda: list(RIDGES))
    split: str = "val"             # the scored split
    max_images: int = 0            # 0 = the whole split
    layer: int = -1                # the block whose normed tokens are probed (0-based; -1 = the last)
    min_depth: float = 1e-3        # depth: scored ground-truth range is (min_depth, data.max_depth)
    init_from: str = ""            # encoder weights (set by --init-from); "" = scratch
    ceiling: str = ""              # a supervised fine-tuning run (or its eval_<split>.json) shown as the ceiling


def run_probe(cfg: ProbeConfig, run_dir: str | Path | None = None) -> dict:
    """Fit and score the closed-form probe and its floors as ``cfg`` says; print the report.

    Args:
        cfg: the probe config.
        run_dir: where ``config.yaml``, ``probe.json`` and ``probe.md`` are written; None = nowhere.

    Returns:
        :func:`mask3d_vit.eval.probe.probe_backbone`'s result, plus ``ceiling`` (metrics) when ``cfg.ceiling`` is
        set and ``report`` (the markdown table).
    """
    task = get_task(f"probe-{cfg.task}") if cfg.task in TASKS else None
    if task is None:
        raise ConfigError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    class_names = get_class_set(class_set_of(cfg.data)).names if cfg.task == "seg" else ()
    ceiling = load_ceiling(cfg.ceiling, cfg.task, cfg.split) if cfg.ceiling else None
    if run_dir is not None:
        save_config(cfg, Path(run_dir) / "config.yaml")
    device = D.init_distributed(cfg.device)
    seed_all(cfg.seed)
    encoder = task.part("model")(cfg)
    try:
        check_layer(encoder, cfg.layer)
    except ValueError as e:
        raise ConfigError(f"{e} ({cfg.encoder})") from None
    result = task.part("evaluator")(cfg, device=device)(encoder)
    result["report"] = format_report(result, ceiling=ceiling, ceiling_name=cfg.ceiling, class_names=class_names)
    if ceiling is not None:
        result["ceiling"] = ceiling
    if run_dir is not None:
        write_json(Path(run_dir) / "probe.json", {k: v for k, v in result.items() if k != "report"})
        write_text(Path(run_dir) / "probe.md", result["report"])
    return result


def build_probe_encoder(cfg: ProbeConfig, *, load_init: bool = True):
    """The frozen encoder to probe (with its final norm); ``load_init=False`` leaves it randomly initialised."""
    return load_probe_encoder(cfg.encoder, img_size=cfg.img_size,
                              init_from=cfg.init_from if load_init and cfg.init_from else None)


def build_probe_evaluator(cfg: ProbeConfig, *, device: torch.device | str, out_dir: str | Path | None = None):
    """``evaluator(encoder) -> result``: :func:`~mask3d_vit.eval.probe.probe_backbone` fitting on the un-augmented
    ``train`` split and scoring ``cfg.split`` (at most ``cfg.max_images`` frames). ``out_dir`` is unused: the
    caller writes the report beside the floors and the ceiling."""
    seg = cfg.task == "seg"
    num_classes = get_class_set(class_set_of(cfg.data)).num_classes if seg else 0
    train = build_dataset(cfg.data, split="train", train=False, require_labels=seg)
    val = build_dataset(cfg.data, split=cfg.split, train=False, require_labels=seg)
    if cfg.max_images:
        val = torch.utils.data.Subset(val, range(min(cfg.max_images, len(val))))
    loader = functools.partial(torch.utils.data.DataLoader, batch_size=cfg.batch_size, shuffle=False)
    return functools.partial(probe_backbone, train=loader(train), val=loader(val), task=cfg.task,
                             num_classes=num_classes, cells=cfg.cells,
                             holdout_every=cfg.holdout_every, alphas=cfg.ridges, min_depth=cfg.min_depth,
                             max_depth=cfg.data.max_depth, layer=cfg.layer, device=device)


def probe_main(args: argparse.Namespace, *, task: str) -> None:
    """The handler of ``mask3d-vit probe seg|depth`` (``task`` = ``probe-seg`` / ``probe-depth``)."""
    spec = get_task(task)
    cfg = load_config(spec.part("config"), args.config, list(spec.overrides) + list(args.overrides))
    cfg = dataclasses.replace(cfg, init_from=args.init_from or cfg.init_from, ceiling=args.ceiling or cfg.ceiling)
    run_dir = Path(args.out or Path("runs") / resolve_recipe(args.config).stem)
    result = run_probe(cfg, run_dir)
    print(f"{cfg.task} probe of {cfg.init_from or 'a scratch encoder'} ({cfg.encoder}), scored on split "
          f"{cfg.split!r}:\n\n{result['report']}\nwrote {run_dir / 'probe.json'}", flush=True)
