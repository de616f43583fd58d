"""``mask3d-vit finetune det``: instance segmentation and object detection with Mask R-CNN on the pre-trained ViT.

The colour ViT (from a Mask3D or MAE-RGB run, an exported backbone, an ImageNet MAE / timm checkpoint, or scratch)
becomes a ViTDet backbone under torchvision's Mask R-CNN (:mod:`mask3d_vit.models.detection`) and is fine-tuned with
layer-wise lr decay::

    mask3d-vit finetune det --config det_synth_tiny --out runs/det_m3d --init-from runs/m3d
    mask3d-vit finetune det --config det_scannet_base --out runs/det_scannet --init-from m3d_base.safetensors \\
        "data.sources=[{format: scannet, root: /data/scannet_frames}]"

Several GPUs (``train.batch_size`` stays the global batch)::

    torchrun --nproc_per_node 8 -m mask3d_vit finetune det --config det_scannet_base --init-from m3d.safetensors

Data: any labelled source of ``data.sources`` with instance maps (SynthRooms, NYUv2, ScanNet frames, frames
folders); instances of stuff classes and fragments below ``min_area`` pixels are not targets
(:mod:`mask3d_vit.data.instances`). A COCO-format json replaces them when ``coco.train_json`` is set.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``tb/``, ``figures/`` (ground truth | detections),
``checkpoints/`` and the latest evaluation as ``eval_<split>.json`` and ``eval_<split>.md`` (per-class AP table).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError
from ..data.build import DataConfig, build_dataset, class_set_of
from ..data.classes import ClassSet, get_class_set
from ..data.instances import DEFAULT_MIN_AREA, CocoInstances, InstanceCollate, thing_class_ids
from ..engine.optim import OptimConfig
from ..engine.trainer import TrainConfig
from ..eval.detection import DetectionEvaluator
from ..models.detection import DetectorConfig, ViTMaskRCNN
from ..viz.detection import DetectionFigure
from .train import TrainData, restore, train_task

TASK = "det"


@dataclass
class CocoConfig:
    """COCO-format instance files; when ``train_json`` is set they replace ``data.sources``."""
    train_json: str = ""
    train_images: str = ""       # folder the train json's file names are relative to
    val_json: str = ""           # "" = evaluate on the training json
    val_images: str = ""


@dataclass
class DetEvalConfig:
    """How the detector is evaluated during and after training."""
    split: str = "val"
    batch_size: int = 4          # per process
    max_images: int = 0          # 0 = the whole split


@dataclass
class DetectionConfig:
    """A detection / instance-segmentation run: data, model, loop, optimizer, evaluation and target rules."""
    task: str = TASK              # marks the run's checkpoints as detection ones (for predict)
    data: DataConfig = field(default_factory=DataConfig)
    coco: CocoConfig = field(default_factory=CocoConfig)
    model: DetectorConfig = field(default_factory=DetectorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: DetEvalConfig = field(default_factory=DetEvalConfig)
    min_area: int = DEFAULT_MIN_AREA       # instances with fewer pixels are not targets
    stuff_classes: list[str] | None = None  # classes that never form instances; None = the class set's default
    init_from: str = ""           # backbone weights to start from (set by --init-from); "" = scratch
    class_set: str = ""           # the label space, filled in at the start of a run so predict needs no data
    class_names: list[str] = field(default_factory=list)  # its names, "unlabeled" first (filled in likewise)


def run_class_set(cfg: DetectionConfig) -> ClassSet:
    """The label space of the run's stored config (after :func:`resolve_classes`)."""
    if not cfg.class_names:
        raise ConfigError("detection config has no class_names; resolve them from the data (resolve_classes)")
    return ClassSet(cfg.class_set, tuple(cfg.class_names))


def build_model(cfg: DetectionConfig, *, load_init: bool = True) -> ViTMaskRCNN:
    """The run's model for its resolved classes; ``load_init=False`` skips ``cfg.init_from`` (weights restored from
    a checkpoint)."""
    init_from = cfg.init_from if load_init and cfg.init_from else None
    return ViTMaskRCNN.from_config(cfg.model, num_classes=len(run_class_set(cfg).names), init_from=init_from)


def coco_train_set(cfg: DetectionConfig) -> CocoInstances | None:
    """The COCO training reader when ``coco.train_json`` is set (it replaces ``data.sources``), else None."""
    return CocoInstances(cfg.coco.train_json, cfg.coco.train_images, min_area=cfg.min_area) \
        if cfg.coco.train_json else None


def resolve_classes(cfg: DetectionConfig) -> DetectionConfig:
    """``cfg`` with ``class_set`` / ``class_names`` read from its data (the categories of ``coco.train_json``, or
    the class set of ``data.sources``), checked against values already stored."""
    coco_train = coco_train_set(cfg)
    found = coco_train.class_set if coco_train is not None else get_class_set(class_set_of(cfg.data))
    if cfg.class_names and (cfg.class_set, tuple(cfg.class_names)) != (found.name, found.names):
        raise ConfigError(f"class_set={cfg.class_set!r} ({len(cfg.class_names)} names) but the data is labelled "
                          f"in {found.name!r} ({len(found.names)} names); a model predicts one label space")
    return dataclasses.replace(cfg, class_set=found.name, class_names=list(found.names))


def instance_collate(cfg: DetectionConfig) -> InstanceCollate:
    """Batches of frames with their instance targets (thing classes only, fragments below ``min_area`` dropped)."""
    return InstanceCollate(thing_ids=thing_class_ids(run_class_set(cfg), cfg.stuff_classes), min_area=cfg.min_area)


def build_train_data(cfg: DetectionConfig) -> TrainData:
    """The COCO training json, or the augmented ``train`` split of ``data.sources`` with instance maps."""
    dataset = coco_train_set(cfg)
    if dataset is None:
        dataset = build_dataset(cfg.data, split="train", train=True, require_labels=True, require_instances=True)
    return TrainData(dataset, instance_collate(cfg))


def build_evaluator(cfg: DetectionConfig, *, device: torch.device | str | None = None,
                    out_dir: str | Path | None = None) -> DetectionEvaluator:
    """COCO box and mask AP on ``coco.val_json`` (default: the training json) or the ``eval.split`` split. The
    detector runs where the model is; ``device`` is unused."""
    coco = cfg.coco
    if coco.train_json:
        val_set = (CocoInstances(coco.val_json, coco.val_images or coco.train_images, min_area=cfg.min_area)
                   if coco.val_json else coco_train_set(cfg))
        if tuple(val_set.class_set.names) != tuple(cfg.class_names):
            raise ConfigError(f"{coco.val_json} and {coco.train_json} list different categories")
    else:
        val_set = build_dataset(cfg.data, split=cfg.eval.split, train=False, require_labels=True,
                                require_instances=True)
    class_set = run_class_set(cfg)
    return DetectionEvaluator(val_set, collate_fn=instance_collate(cfg), class_names=class_set.names,
                              thing_ids=thing_class_ids(class_set, cfg.stuff_classes),
                              batch_size=cfg.eval.batch_size, max_images=cfg.eval.max_images, split=cfg.eval.split,
                              out_dir=out_dir)


def build_figures(cfg: DetectionConfig) -> DetectionFigure:
    """Ground truth | detections scoring >= 0.5, in the class set's colours."""
    return DetectionFigure(run_class_set(cfg))


def run_detection(cfg: DetectionConfig, run_dir: str | Path, *, resume: str | None = None) -> dict:
    """Fine-tune Mask R-CNN as ``cfg`` says into ``run_dir``.

    Returns:
        The final logged losses and evaluation metrics (percent): ``eval/box_AP``, ``eval/box_AP50``,
        ``eval/box_AP75``, the same for ``mask_``, and ``eval/box_AP/<class>``, ``eval/mask_AP/<class>``.
    """
    return train_task(TASK, cfg, run_dir, resume=resume)


def load_detection_model(path: str | Path) -> tuple[ViTMaskRCNN, DetectionConfig, Path]:
    """Rebuild a fine-tuned detector from a run directory (its newest good checkpoint) or a checkpoint file.

    Returns:
        (model in eval mode on the CPU, the run config, the checkpoint file used); the class set is
        :func:`run_class_set` of the config.
    """
    _, model, cfg, ckpt = restore(path, expect=(TASK,), expected="a detection checkpoint")
    return model, cfg, ckpt


def shown(key: str) -> bool:
    """Summary keys: everything but the per-class APs (they stay in metrics.jsonl and eval_<split>.md)."""
    return "_AP/" not in key
