"""``mask3d-vit finetune seg|depth``, ``mask3d-vit probe seg|depth`` and ``mask3d-vit eval``: dense RGB transfer.

The colour ViT of a pre-training run (Mask3D, MAE-RGB), an exported backbone, an ImageNet MAE / timm checkpoint or
nothing (scratch) is fine-tuned for semantic segmentation or depth, or probed frozen: ``probe`` fits the
closed-form linear probe of :mod:`mask3d_vit.eval.probe` on the encoder's final features and prints it beside the
image-blind floors (constant, position only) and, with ``--ceiling``, a supervised run of the same encoder::

    mask3d-vit finetune seg --config finetune_synth_seg --out runs/seg_m3d --init-from runs/m3d
    mask3d-vit probe depth --out runs/depth_probe_m3d --init-from runs/m3d --ceiling runs/depth_ceiling
    mask3d-vit eval --ckpt runs/seg_m3d eval.window=128         # re-evaluate, e.g. with sliding windows

Several GPUs (``train.batch_size`` stays the global batch)::

    torchrun --nproc_per_node 8 -m mask3d_vit finetune seg --config finetune_nyuv2_seg_base --init-from m3d.safetensors

A fine-tuning run directory holds ``config.yaml``, ``metrics.jsonl``, ``tb/``, ``figures/``, ``checkpoints/`` and the
latest evaluation as ``eval_<split>.json`` (+ ``eval_<split>.md``, the per-class table, for segmentation). A probe
directory holds ``config.yaml``, ``probe.json`` (probe, floors, ceiling, chosen ridge strength) and ``probe.md``
(the printed table).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, load_config, resolve_recipe, save_config, to_dict
from ..data.build import DataConfig, build_dataset, class_set_of
from ..data.classes import get_class_set
from ..data.sample import DEPTH, LABEL, RGB, VALID
from ..engine import distributed as D
from ..checkpoint import CKPT_DIR, load_latest
from ..engine.data import seed_all
from ..engine.launch import run_command
from ..engine.optim import OptimConfig
from ..engine.trainer import TrainConfig, Trainer
from ..eval.depth import DepthMeter
from ..eval.probe import RIDGES, format_report, load_ceiling, load_probe_encoder, probe_backbone
from ..eval.segmentation import SegmentationMeter, format_class_table
from ..io import write_json, write_png, write_text
from ..models.dense import TASKS, DenseModel, DenseModelConfig
from ..viz import colorize_depth, overlay_labels


@dataclass
class EvalConfig:
    """How a fine-tuned model is evaluated."""
    split: str = "val"
    batch_size: int = 8          # per process
    window: int = 0              # sliding-window side in pixels; 0 = whole images
    window_stride: int = 0       # 0 = 2/3 of the window
    max_images: int = 0          # 0 = the whole split (a cap keeps periodic evaluation cheap)
    min_depth: float = 1e-3      # depth: scored ground-truth range is (min_depth, data.max_depth)


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


class DenseEvaluator:
    """Segmentation or depth metrics of a model on a held-out dataset, reduced over ranks.

    Each rank scores every ``world_size``-th image; the meters sum their counts across ranks, so the result is exact
    for any number of processes. Rank 0 writes ``eval_<split>.json`` (and the per-class table ``eval_<split>.md``
    for segmentation) into ``out_dir``.

    Args:
        dataset: map-style dataset of samples with ``label`` (seg) or ``depth``/``valid`` (depth).
        task: "seg" or "depth".
        cfg: evaluation settings.
        device: this rank's device.
        class_names: the class set's names (seg), "unlabeled" first.
        max_depth: depth: the scored range's upper bound (the data's ``max_depth``).
        out_dir: where rank 0 writes the reports; None = nowhere.
    """

    def __init__(self, dataset, *, task: str, cfg: EvalConfig, device: torch.device | str,
                 class_names: tuple[str, ...] = (), max_depth: float = 10.0, out_dir: str | Path | None = None):
        n = min(len(dataset), cfg.max_images) if cfg.max_images else len(dataset)
        self.indices = list(range(D.get_rank(), n, D.get_world_size()))
        self.dataset, self.task, self.cfg, self.device = dataset, task, cfg, torch.device(device)
        self.class_names, self.max_depth = tuple(class_names), max_depth
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.table = ""

    def __call__(self, model: DenseModel) -> dict[str, float]:
        if self.task == "seg":
            meter = SegmentationMeter(len(self.class_names) - 1, device=self.device)
        else:
            meter = DepthMeter(min_depth=self.cfg.min_depth, max_depth=self.max_depth, device=self.device)
        for start in range(0, len(self.indices), self.cfg.batch_size):
            batch = torch.utils.data.default_collate(
                [self.dataset[i] for i in self.indices[start:start + self.cfg.batch_size]])
            pred = model.predict(batch[RGB].to(self.device), window=self.cfg.window,
                                 stride=self.cfg.window_stride or None)
            if self.task == "seg":
                meter.update(pred, batch[LABEL].to(self.device))
            else:
                meter.update(pred, batch[DEPTH].to(self.device), batch[VALID].to(self.device))
        meter.all_reduce()
        metrics = meter.compute()
        flat = {k: v for k, v in metrics.items() if not isinstance(v, list)}
        if self.task == "seg":
            self.table = format_class_table(metrics, class_names=self.class_names)
            # Per-class IoUs are logged too; classes absent from both labels and predictions have none.
            flat.update({f"iou/{name}": v for name, v in zip(self.class_names[1:], metrics["iou"]) if v == v})
        if D.is_main() and self.out_dir is not None:
            name = f"eval_{self.cfg.split}"
            write_json(self.out_dir / f"{name}.json", {"task": self.task, "split": self.cfg.split, **metrics})
            if self.table:
                write_text(self.out_dir / f"{name}.md", self.table)
        return flat


def dense_figure(batch: dict, pred: torch.Tensor, path: str | Path, *, task: str, palette: np.ndarray | None = None,
                 max_rows: int = 4) -> None:
    """A PNG grid, one row per sample: RGB | ground truth | prediction (class overlays or coloured depth).

    Args:
        batch: the input batch (``rgb`` uint8 ``(B, 3, H, W)``, and ``label`` or ``depth``/``valid``).
        pred: the model's prediction: ``(B, H, W)`` class ids (seg) or ``(B, 1, H, W)`` metres (depth).
        path: PNG to write (atomically).
        task: "seg" or "depth".
        palette: uint8 ``(K + 1, 3)`` class colours (seg).
        max_rows: at most this many samples.
    """
    rows = []
    for i in range(min(max_rows, batch[RGB].shape[0])):
        rgb = batch[RGB][i].permute(1, 2, 0).cpu().numpy()
        if task == "seg":
            cells = [overlay_labels(rgb, m[i].cpu().numpy(), palette, alpha=0.7) for m in (batch[LABEL], pred)]
        else:
            gt, valid = batch[DEPTH][i, 0].cpu().numpy(), batch[VALID][i, 0].cpu().numpy()
            lo, hi = (np.percentile(gt[valid], [2, 98]) if valid.any() else (0.0, 1.0))
            # One colour scale per row, the ground truth's, so errors in scale show as colour shifts.
            cells = [colorize_depth(gt, valid, vmin=lo, vmax=hi),
                     colorize_depth(pred[i, 0].float().cpu().numpy(), vmin=lo, vmax=hi)]
        rows.append(np.concatenate([rgb] + cells, axis=1))
    write_png(path, np.concatenate(rows, axis=0))


def _visualize(model: DenseModel, batch: dict, path: Path, *, task: str, palette: np.ndarray | None) -> None:
    dense_figure(batch, model.predict(batch[RGB]), path, task=task, palette=palette)


def build_evaluator(cfg: FinetuneConfig, *, device: torch.device | str, out_dir: str | Path | None) -> DenseEvaluator:
    """The evaluator of a run on its ``cfg.eval.split`` split."""
    dataset = build_dataset(cfg.data, split=cfg.eval.split, train=False, require_labels=cfg.task == "seg")
    names = get_class_set(cfg.class_set).names if cfg.task == "seg" else ()
    return DenseEvaluator(dataset, task=cfg.task, cfg=cfg.eval, device=device, class_names=names,
                          max_depth=cfg.data.max_depth, out_dir=out_dir)


def run_finetune(cfg: FinetuneConfig, run_dir: str | Path, *, init_from: str | None = None,
                 resume: str | None = None) -> dict:
    """Fine-tune or probe as ``cfg`` says into ``run_dir``.

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
    run_dir = Path(run_dir)
    if init_from is not None:
        cfg = dataclasses.replace(cfg, init_from=str(init_from))
    cfg = resolve_class_set(cfg)
    # Initial weights are loaded even when resuming: a resumed checkpoint overwrites them, and "--resume auto"
    # on a run without checkpoints must start from them.
    seed_all(cfg.train.seed)
    model = build_model(cfg)
    palette = get_class_set(cfg.class_set).palette if cfg.task == "seg" else None
    train_set = build_dataset(cfg.data, split="train", train=True, require_labels=cfg.task == "seg")
    trainer = Trainer(model, train_set, train=cfg.train, optim=cfg.optim, run_dir=run_dir, config=to_dict(cfg),
                      visualizer=functools.partial(_visualize, task=cfg.task, palette=palette))
    trainer.evaluator = evaluator = build_evaluator(cfg, device=trainer.device, out_dir=run_dir)
    result = trainer.fit(resume=resume)
    if D.is_main() and evaluator.table:
        print(evaluator.table, flush=True)
    return result


def load_dense_model(path: str | Path, overrides: list[str] | tuple[str, ...] = ()
                     ) -> tuple[DenseModel, FinetuneConfig, Path]:
    """Rebuild a fine-tuned model from a run directory (its newest good checkpoint) or a checkpoint file.

    Args:
        path: run directory or checkpoint.
        overrides: ``key=value`` changes to the stored config (e.g. ``eval.window=128``; not the architecture).

    Returns:
        (model in eval mode on the CPU, the run config, the checkpoint file used).
    """
    ckpt, state = load_latest(path)
    stored = state.get("config")
    if not isinstance(stored, dict) or "task" not in stored:
        raise ConfigError(f"{ckpt}: not a fine-tuning checkpoint (its config has no task); for pre-training runs "
                          f"use --init-from with finetune/probe")
    cfg = load_config(FinetuneConfig, None, overrides, base=stored)
    model = build_model(cfg, load_init=False)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, ckpt


def _train_main(args: argparse.Namespace, *, task: str) -> None:
    # The command fixes the task; later overrides still win.
    args.overrides = [f"task={task}"] + list(args.overrides)
    run_command(args, FinetuneConfig, run_finetune, shown=lambda key: "/iou/" not in key)


def _eval_main(args: argparse.Namespace) -> None:
    model, cfg, ckpt = load_dense_model(args.ckpt, args.overrides)
    cfg = resolve_class_set(cfg)
    device = D.init_distributed(cfg.train.device)
    out_dir = Path(args.out) if args.out else ckpt.parent.parent if ckpt.parent.name == CKPT_DIR else ckpt.parent
    evaluator = build_evaluator(cfg, device=device, out_dir=out_dir)
    with torch.no_grad():
        metrics = evaluator(model.to(device))
    if D.is_main():
        print(f"{ckpt} on split {cfg.eval.split!r}:")
        print(evaluator.table or "\n".join(f"  {k}: {v:.4g}" for k, v in metrics.items()), flush=True)
        print(f"wrote {out_dir / f'eval_{cfg.eval.split}.json'}", flush=True)
    D.cleanup()


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
    if cfg.task not in TASKS:
        raise ConfigError(f"task={cfg.task!r}: choose one of {', '.join(TASKS)}")
    seg = cfg.task == "seg"
    class_names = get_class_set(class_set_of(cfg.data)).names if seg else ()
    ceiling = load_ceiling(cfg.ceiling, cfg.task, cfg.split) if cfg.ceiling else None
    if run_dir is not None:
        save_config(cfg, Path(run_dir) / "config.yaml")
    device = D.init_distributed(cfg.device)
    seed_all(cfg.seed)
    encoder = load_probe_encoder(cfg.encoder, img_size=cfg.img_size, init_from=cfg.init_from or None)
    train = build_dataset(cfg.data, split="train", train=False, require_labels=seg)
    val = build_dataset(cfg.data, split=cfg.split, train=False, require_labels=seg)
    if cfg.max_images:
        val = torch.utils.data.Subset(val, range(min(cfg.max_images, len(val))))
    loader = functools.partial(torch.utils.data.DataLoader, batch_size=cfg.batch_size, shuffle=False)
    result = probe_backbone(encoder, loader(train), loader(val), task=cfg.task,
                            num_classes=len(class_names) - 1 if seg else 0, cells=cfg.cells,
                            holdout_every=cfg.holdout_every, alphas=cfg.ridges, min_depth=cfg.min_depth,
                            max_depth=cfg.data.max_depth, device=device)
    result["report"] = format_report(result, ceiling=ceiling, ceiling_name=cfg.ceiling, class_names=class_names)
    if ceiling is not None:
        result["ceiling"] = ceiling
    if run_dir is not None:
        write_json(Path(run_dir) / "probe.json", {k: v for k, v in result.items() if k != "report"})
        write_text(Path(run_dir) / "probe.md", result["report"])
    return result


def _probe_main(args: argparse.Namespace, *, task: str) -> None:
    cfg = load_config(ProbeConfig, args.config, [f"task={task}"] + list(args.overrides))
    for flag, value in (("--init-from", args.init_from), ("--ceiling", args.ceiling)):
        if value and not Path(value).exists():
            raise FileNotFoundError(f"{flag} {value}: no such file or run directory")
    cfg = dataclasses.replace(cfg, init_from=args.init_from or cfg.init_from, ceiling=args.ceiling or cfg.ceiling)
    run_dir = Path(args.out or Path("runs") / resolve_recipe(args.config).stem)
    result = run_probe(cfg, run_dir)
    print(f"{task} probe of {cfg.init_from or 'a scratch encoder'} ({cfg.encoder}), scored on split "
          f"{cfg.split!r}:\n\n{result['report']}\nwrote {run_dir / 'probe.json'}", flush=True)
