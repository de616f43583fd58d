"""COCO-style detection and instance-segmentation metrics through pycocotools.

Reported in percent, as papers do: ``box_AP`` (mean over IoU 0.50:0.05:0.95), ``box_AP50``, ``box_AP75`` and the
same for masks (``mask_AP``...), plus ``box_AP/<class>`` and ``mask_AP/<class>`` for every thing class with ground
truth in the evaluated frames. Ground truth comes from the same target dicts the model trains on
(:mod:`mask3d_vit.data.instances`), so training and evaluation agree on what an instance is.

Example::

    records = CocoRecords()
    for image_id, (target, prediction) in enumerate(zip(targets, predictions)):
        records.add(image_id, target, prediction)
    metrics = coco_metrics(records, class_names=class_set.names, thing_ids=thing_class_ids(class_set))
    print(format_ap_table(metrics, class_names=class_set.names, thing_ids=thing_class_ids(class_set)))
"""
from __future__ import annotations

import contextlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.instances import INSTANCES
from ..engine.distributed import get_rank, get_world_size, is_dist, is_main
from ..io import write_json, write_text

# (metric prefix, pycocotools iouType, which detections of CocoRecords it scores)
_IOU_TYPES = (("box", "bbox", "box_dets"), ("mask", "segm", "mask_dets"))


def _encode(masks: torch.Tensor) -> list[dict]:
    """``masks: (N, H, W)`` bool -> compressed RLEs, the form pycocotools compares masks in."""
    from pycocotools import mask as mask_utils

    array = np.asfortranarray(masks.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    return mask_utils.encode(array)


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    boxes = boxes.detach().float().cpu()
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


@dataclass
class CocoRecords:
    """Ground truth and predictions of an evaluation set as COCO records, added one frame at a time.

    Masks are run-length encoded as they arrive, so a whole evaluation set stays small (and cheap to gather
    across ranks).
    """
    images: list[dict] = field(default_factory=list)
    gt: list[dict] = field(default_factory=list)
    box_dets: list[dict] = field(default_factory=list)
    mask_dets: list[dict] = field(default_factory=list)

    def add(self, image_id: int, target: dict, prediction: dict, *, mask_threshold: float = 0.5) -> None:
        """Record one frame.

        Args:
            image_id: unique id of the frame in the evaluation set.
            target: ``boxes`` (N, 4) x0y0x1y1, ``labels`` (N,), ``masks`` (N, H, W) of the ground truth.
            prediction: ``boxes`` (M, 4), ``labels`` (M,), ``scores`` (M,) and ``masks`` (M, 1, H, W) or
                (M, H, W), probabilities (as torchvision's Mask R-CNN returns them) or binary.
            mask_threshold: probability above which a predicted pixel is inside the mask.
        """
        height, width = target["masks"].shape[-2:]
        self.images.append({"id": image_id, "height": int(height), "width": int(width)})
        gt_masks = target["masks"].bool()
        for box, label, rle, area in zip(_xywh(target["boxes"]), target["labels"].tolist(), _encode(gt_masks),
                                         gt_masks.flatten(1).sum(1).tolist()):
            # ids start at 1: COCOeval marks unmatched detections with gt id 0.
            self.gt.append({"id": len(self.gt) + 1, "image_id": image_id, "category_id": label, "bbox": box,
                            "segmentation": rle, "area": float(area), "iscrowd": 0})
        masks = prediction["masks"]
        masks = masks[:, 0] if masks.ndim == 4 else masks
        if masks.shape[-2:] != (height, width):
            raise ValueError(f"image {image_id}: predicted masks are {tuple(masks.shape[-2:])} but the ground truth "
                             f"is {(int(height), int(width))}; predict at the original image size")
        masks = masks > mask_threshold if masks.is_floating_point() else masks.bool()
        labels, scores = prediction["labels"].tolist(), prediction["scores"].tolist()
        for box, label, score in zip(_xywh(prediction["boxes"]), labels, scores):
            self.box_dets.append({"image_id": image_id, "category_id": label, "bbox": box, "score": score})
        for rle, label, score in zip(_encode(masks), labels, scores):
            self.mask_dets.append({"image_id": image_id, "category_id": label, "segmentation": rle, "score": score})

    def extend(self, other: "CocoRecords") -> None:
        """Append ``other``'s records; image ids must not collide, gt ids are renumbered."""
        for ann in other.gt:
            self.gt.append({**ann, "id": len(self.gt) + 1})
        self.images += other.images
        self.box_dets += other.box_dets
        self.mask_dets += other.mask_dets


def gather_records(records: CocoRecords) -> CocoRecords:
    """Every rank's records, merged on every rank (identity in one process)."""
    if not is_dist():
        return records
    parts = [None] * get_world_size()
    torch.distributed.all_gather_object(parts, records)
    merged = CocoRecords()
    for part in parts:
        merged.extend(part)
    return merged


def coco_metrics(records: CocoRecords, *, class_names: Sequence[str], thing_ids: Sequence[int]) -> dict[str, float]:
    """Box and mask AP, AP50, AP75 and per-class AP (percent) of ``records``.

    Args:
        records: ground truth and predictions of the evaluation set.
        class_names: names of the class set, index = class id.
        thing_ids: the class ids scored (COCO categories); predictions of other ids count for nothing.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not records.gt:
        raise ValueError("the evaluation frames hold no ground-truth instances; check the split and the class "
                         "set's thing classes (mask3d_vit.data.instances.STUFF_CLASSES)")
    unknown = sorted({a["category_id"] for a in records.gt} - set(thing_ids))
    if unknown:
        raise ValueError(f"ground truth has class ids {unknown}, which are not thing classes {list(thing_ids)}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress on stdout
        gt = COCO()
        gt.dataset = {"images": records.images, "annotations": records.gt,
                      "categories": [{"id": int(c), "name": class_names[c]} for c in thing_ids]}
        gt.createIndex()
        metrics = {}
        for prefix, iou_type, attr in _IOU_TYPES:
            dets = getattr(records, attr)
            if not dets:  # loadRes cannot take an empty list; nothing detected scores zero
                metrics.update({f"{prefix}_{k}": 0.0 for k in ("AP", "AP50", "AP75")})
                metrics.update({f"{prefix}_AP/{class_names[c]}": 0.0 for c in sorted({a["category_id"]
                                                                                      for a in records.gt})})
                continue
            # loadRes annotates the dicts it gets (id, area): hand it copies so records stay reusable.
            evaluation = COCOeval(gt, gt.loadRes([dict(d) for d in dets]), iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            for key, value in zip(("AP", "AP50", "AP75"), evaluation.stats[:3]):
                metrics[f"{prefix}_{key}"] = 100.0 * float(value)
            # precision: (IoU thresholds, recall points, classes, area ranges, max dets); area "all", 100 dets.
            precision = evaluation.eval["precision"][:, :, :, 0, -1]
            for k, cat in enumerate(evaluation.params.catIds):
                p = precision[:, :, k]
                if (p > -1).any():  # -1: the class has no ground truth here
                    metrics[f"{prefix}_AP/{class_names[cat]}"] = 100.0 * float(p[p > -1].mean())
    return metrics


def format_ap_table(metrics: dict[str, float], *, class_names: Sequence[str], thing_ids: Sequence[int]) -> str:
    """Markdown table of per-class box and mask AP (classes without ground truth show "-"), then the means."""
    def cell(key: str) -> str:
        value = metrics.get(key)
        return "-" if value is None or math.isnan(value) else f"{value:.1f}"

    lines = ["| class | box AP | mask AP |", "|---|---:|---:|"]
    for c in thing_ids:
        name = class_names[c]
        lines.append(f"| {name} | {cell(f'box_AP/{name}')} | {cell(f'mask_AP/{name}')} |")
    for key in ("AP", "AP50", "AP75"):
        lines.append(f"| **{key}** | {cell(f'box_{key}')} | {cell(f'mask_{key}')} |")
    return "\n".join(lines) + "\n"


class DetectionEvaluator:
    """``evaluator(model) -> metrics`` for the Trainer: runs the detector over a dataset and scores it COCO-style.

    Each rank predicts its share of the frames (every ``world_size``-th), then the records are gathered so all ranks
    return the same numbers. Rank 0 writes ``eval_<split>.json`` (every metric) and ``eval_<split>.md`` (the
    per-class table, also kept as :attr:`table`) into ``out_dir``.

    Args:
        dataset: evaluation samples (label + instance maps, or :class:`~mask3d_vit.data.instances.CocoInstances`).
        collate_fn: the detection collate (:class:`~mask3d_vit.data.instances.InstanceCollate`).
        class_names: names of the class set, index = class id.
        thing_ids: class ids scored.
        batch_size: frames per forward pass.
        max_images: score only the first ``max_images`` frames (0 = all), to keep periodic evaluation cheap.
        split: name of the evaluated split, used in the report file names.
        out_dir: where rank 0 writes the reports; None = nowhere.
    """

    def __init__(self, dataset, *, collate_fn, class_names: Sequence[str], thing_ids: Sequence[int],
                 batch_size: int = 4, max_images: int = 0, split: str = "val", out_dir: str | Path | None = None):
        n = min(len(dataset), max_images) if max_images else len(dataset)
        if n == 0:
            raise ValueError(f"the detection evaluation split {split!r} is empty")
        self.indices = list(range(get_rank(), n, get_world_size()))
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.class_names = tuple(class_names)
        self.thing_ids = tuple(thing_ids)
        self.batch_size = batch_size
        self.split = split
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.table = ""

    @torch.no_grad()
    def predict(self, model) -> CocoRecords:
        """This rank's records; image ids are dataset indices, so ranks never collide."""
        records = CocoRecords()
        for start in range(0, len(self.indices), self.batch_size):
            chunk = self.indices[start:start + self.batch_size]
            batch = self.collate_fn([self.dataset[i] for i in chunk])
            for image_id, target, prediction in zip(chunk, batch[INSTANCES], model(batch)["detections"]):
                records.add(image_id, target, prediction)
        return records

    def __call__(self, model) -> dict[str, float]:
        was_training = model.training
        model.eval()
        try:
            records = gather_records(self.predict(model))
        finally:
            model.train(was_training)
        metrics = coco_metrics(records, class_names=self.class_names, thing_ids=self.thing_ids)
        self.table = format_ap_table(metrics, class_names=self.class_names, thing_ids=self.thing_ids)
        if is_main() and self.out_dir is not None:
            write_json(self.out_dir / f"eval_{self.split}.json", {"split": self.split, **metrics})
            write_text(self.out_dir / f"eval_{self.split}.md", self.table)
        return metrics
