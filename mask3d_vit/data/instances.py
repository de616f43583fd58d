"""Instance targets for detection and instance segmentation: boxes, masks and labels per frame.

Two sources feed the same target dict (torchvision's Mask R-CNN format, in the frame's pixel grid):

- label + instance maps of a sample (SynthRooms, NYUv2, ScanNet, frames folders; see :mod:`mask3d_vit.data.sample`)
  through :func:`instance_targets`, usually inside :class:`InstanceCollate` so augmentations act on the maps first;
- a COCO-format json through :class:`CocoInstances`, whose samples already carry the targets.

Target dict of one frame with ``N`` instances::

    boxes   float32 (N, 4)    x0, y0, x1, y1 in pixel-edge coordinates: pixel (i, j) spans [j, j+1) x [i, i+1),
                              so a one-pixel instance has a 1x1 box (the COCO convention)
    labels  int64 (N,)        class ids of the class set (never 0, never a stuff class)
    masks   uint8 (N, H, W)   1 inside the instance

Thing and stuff classes: wall, floor and ceiling cover the frame rather than forming objects, so they are "stuff"
and never become instances. :data:`STUFF_CLASSES` lists them per class set; every other class is a "thing":

=================  =====================================================================================
class set          things
=================  =====================================================================================
nyu13, synthrooms  all but wall, floor, ceiling (10): bed, books, chair, furniture, objects, picture, sofa,
                   table, tv, window
nyu40              all but wall, floor, ceiling (37)
scannet20          all but wall, floor: the 18 classes of the ScanNet instance benchmark
sun37              all but wall, floor, ceiling (34)
cityscapes19       person, rider, car, truck, bus, train, motorcycle, bicycle (the Cityscapes instance classes)
other / COCO json  every class
=================  =====================================================================================

Tiny fragments: an instance whose mask covers fewer than ``min_area`` pixels (default
:data:`DEFAULT_MIN_AREA` = 16, a 4x4 patch) is dropped: at such sizes label-map noise (edge pixels, occlusion
slivers) dominates, and the box is smaller than a quarter of one 16-pixel ViT patch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import masks_to_boxes

from .classes import ClassSet
from .frames import read_image
from .sample import FRAME_ID, INSTANCE, JITTER, LABEL, RGB

INSTANCES = "instances"
DEFAULT_MIN_AREA = 16

STUFF_CLASSES: dict[str, tuple[str, ...]] = {
    "nyu13": ("wall", "floor", "ceiling"),
    "synthrooms": ("wall", "floor", "ceiling"),
    "nyu40": ("wall", "floor", "ceiling"),
    "scannet20": ("wall", "floor"),
    "sun37": ("wall", "floor", "ceiling"),
    "cityscapes19": ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                     "vegetation", "terrain", "sky"),
}


def thing_class_ids(class_set: ClassSet, stuff: Sequence[str] | None = None) -> tuple[int, ...]:
    """Ids of the classes of ``class_set`` that form instances.

    Args:
        class_set: the label space.
        stuff: class names that never form instances; None = :data:`STUFF_CLASSES` of the class set (no stuff for
            a class set not listed there).
    """
    stuff = STUFF_CLASSES.get(class_set.name, ()) if stuff is None else tuple(stuff)
    unknown = sorted(set(stuff) - set(class_set.names[1:]))
    if unknown:
        raise ValueError(f"stuff classes {unknown} are not in class set {class_set.name!r} "
                         f"(classes: {', '.join(class_set.names[1:])})")
    things = tuple(i for i, name in enumerate(class_set.names) if i > 0 and name not in stuff)
    if not things:
        raise ValueError(f"class set {class_set.name!r} has no thing classes once {list(stuff)} are removed")
    return things


def empty_targets(height: int, width: int) -> dict[str, torch.Tensor]:
    """The target dict of a frame without instances (a valid negative for Mask R-CNN)."""
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
            "masks": torch.zeros(0, height, width, dtype=torch.uint8)}


def masks_to_targets(masks: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """``masks: (N, H, W)`` bool with at least one pixel each, ``labels: (N,)`` -> the target dict."""
    if masks.shape[0] == 0:
        return empty_targets(*masks.shape[1:])
    boxes = masks_to_boxes(masks)
    boxes[:, 2:] += 1  # masks_to_boxes gives the last pixel's index; the box ends at that pixel's far edge
    return {"boxes": boxes.float(), "labels": labels.to(torch.int64), "masks": masks.to(torch.uint8)}


def instance_targets(label: torch.Tensor, instance: torch.Tensor, *, thing_ids: Sequence[int],
                     min_area: int = DEFAULT_MIN_AREA) -> dict[str, torch.Tensor]:
    """Label + instance maps of one frame -> its target dict; one box and mask per kept instance.

    Each non-zero instance id is one instance, even when its pixels are disconnected (an occluded object). Its
    class is the most frequent non-zero label under its mask, so a few mislabelled edge pixels do not split it.
    Dropped: instances whose pixels are all unlabeled, whose class is stuff (not in ``thing_ids``), or whose mask
    has fewer than ``min_area`` pixels.

    Args:
        label: int64 (H, W) class ids, 0 = unlabeled.
        instance: int64 (H, W) instance ids unique within the frame, 0 = none.
        thing_ids: class ids that form instances (:func:`thing_class_ids`).
        min_area: smallest kept mask, in pixels.
    """
    if label.shape != instance.shape or label.ndim != 2:
        raise ValueError(f"label {tuple(label.shape)} and instance {tuple(instance.shape)} maps must both be (H, W)")
    ids, inverse = torch.unique(instance, return_inverse=True)
    num_classes = int(label.max().clamp(min=0)) + 1
    # votes[i, c]: pixels of the i-th id labelled c; labels below 0 or unlabeled pixels do not vote.
    voting = label > 0
    votes = torch.bincount(inverse[voting] * num_classes + label[voting],
                           minlength=len(ids) * num_classes).view(len(ids), num_classes)
    classes = votes.argmax(1)
    area = torch.bincount(inverse.flatten(), minlength=len(ids))
    things = torch.zeros(num_classes, dtype=torch.bool)
    things[[t for t in thing_ids if t < num_classes]] = True
    keep = (ids > 0) & (votes.sum(1) > 0) & things[classes] & (area >= min_area)
    masks = instance[None] == ids[keep][:, None, None]
    return masks_to_targets(masks, classes[keep])


class InstanceCollate:
    """``collate_fn`` for detection: samples -> a batch with per-frame target dicts.

    Samples carrying label + instance maps are converted with :func:`instance_targets` (after the dataset's
    transforms, so crops and flips act on the maps); samples that already carry ``"instances"``
    (:class:`CocoInstances`) keep them.

    Returned batch: ``rgb`` uint8 (B, 3, H, W) when all frames share a size, else a list of (3, H_i, W_i);
    ``instances`` a list of B target dicts; ``frame_id`` a list of B names.

    Args:
        thing_ids: class ids that form instances (:func:`thing_class_ids`).
        min_area: smallest kept mask, in pixels.
    """

    def __init__(self, *, thing_ids: Sequence[int], min_area: int = DEFAULT_MIN_AREA):
        self.thing_ids = tuple(int(t) for t in thing_ids)
        self.min_area = int(min_area)

    def targets(self, sample: dict) -> dict[str, torch.Tensor]:
        if INSTANCES in sample:
            return sample[INSTANCES]
        if LABEL not in sample or INSTANCE not in sample:
            missing = [k for k in (LABEL, INSTANCE) if k not in sample]
            raise KeyError(f"frame {sample.get(FRAME_ID)!r} has no {' or '.join(missing)} map; detection needs "
                           f"label + instance maps (or a COCO json via CocoInstances)")
        return instance_targets(sample[LABEL], sample[INSTANCE], thing_ids=self.thing_ids, min_area=self.min_area)

    def __call__(self, samples: Sequence[dict]) -> dict:
        images = [s[RGB] for s in samples]
        same_size = all(im.shape == images[0].shape for im in images)
        batch = {RGB: torch.stack(images) if same_size else images,
                 INSTANCES: [self.targets(s) for s in samples],
                 FRAME_ID: [s.get(FRAME_ID, "") for s in samples]}
        if JITTER in samples[0]:  # deferred colour jitter (data.augment_on_device), applied by the trainer
            batch[JITTER] = torch.stack([s[JITTER] for s in samples])
        return batch


class CocoInstances(torch.utils.data.Dataset):
    """A COCO-format instance json (polygons or RLE) as a dataset of RGB samples with instance targets.

    Categories become the class set ``("unlabeled", *names)`` in ascending category-id order, so labels are
    1..K whatever ids the file uses (:attr:`category_ids` maps back). Crowd regions (``iscrowd: 1``) and
    fragments below ``min_area`` pixels are skipped; images without annotations stay in as negatives. Samples
    hold ``rgb``, ``instances`` and ``frame_id`` (the image file name); there is no depth.

    Args:
        annotations: the json file (``images``, ``annotations``, ``categories``).
        image_root: folder the images' ``file_name`` entries are relative to.
        min_area: smallest kept mask, in pixels.
        transform: callable applied to each sample dict.
    """

    def __init__(self, annotations: str | Path, image_root: str | Path, *, min_area: int = DEFAULT_MIN_AREA,
                 transform=None):
        self.path = Path(annotations)
        self.image_root = Path(image_root)
        self.min_area = int(min_area)
        self.transform = transform
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.path}: COCO annotation file not found") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{self.path}: not valid JSON: {e}") from None
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise ValueError(f"{self.path}: a COCO instance file needs a list under {key!r}")
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids = tuple(int(c["id"]) for c in categories)
        self.class_set = ClassSet(self.path.stem, ("unlabeled",) + tuple(str(c["name"]) for c in categories))
        self._label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.images = sorted(data["images"], key=lambda im: im["id"])
        self._anns: dict[int, list[dict]] = {im["id"]: [] for im in self.images}
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0):
                continue
            if ann.get("image_id") not in self._anns:
                raise ValueError(f"{self.path}: annotation {ann.get('id')} refers to unknown image "
                                 f"{ann.get('image_id')}")
            if ann.get("category_id") not in self._label_of:
                raise ValueError(f"{self.path}: annotation {ann.get('id')} has category {ann.get('category_id')}, "
                                 f"which is not in 'categories'")
            if not ann.get("segmentation"):
                raise ValueError(f"{self.path}: annotation {ann.get('id')} has no segmentation; Mask R-CNN needs "
                                 f"polygon or RLE masks")
            self._anns[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        from pycocotools import mask as mask_utils

        info = self.images[index]
        rgb = read_image(self.image_root / info["file_name"], "RGB")
        height, width = rgb.shape[:2]
        stated = (info.get("height", height), info.get("width", width))
        if stated != (height, width):
            raise ValueError(f"{self.image_root / info['file_name']}: image is {width}x{height} but "
                             f"{self.path} says {stated[1]}x{stated[0]}")
        masks, labels = [], []
        for ann in self._anns[info["id"]]:
            seg = ann["segmentation"]
            if isinstance(seg, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, height, width)
            else:
                rle = seg
            mask = mask_utils.decode(rle)
            if int(mask.sum()) >= self.min_area:
                masks.append(torch.from_numpy(mask))
                labels.append(self._label_of[ann["category_id"]])
        masks = torch.stack(masks).bool() if masks else torch.zeros(0, height, width, dtype=torch.bool)
        sample = {RGB: torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
                  INSTANCES: masks_to_targets(masks, torch.tensor(labels, dtype=torch.int64)),
                  FRAME_ID: str(info["file_name"])}
        return self.transform(sample) if self.transform else sample
