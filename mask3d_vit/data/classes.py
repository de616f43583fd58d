"""Class sets: names (index = label id, 0 = unlabeled / ignored) and colour palettes.

Every label map in the library uses the ids of one of these sets, with 0 meaning "unlabeled". Datasets whose native
ids start at 0 (Cityscapes train ids) are shifted by one when read, so ``ignore_index`` is always 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NYU13 = ("unlabeled", "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa",
         "table", "tv", "wall", "window")

NYU40 = ("unlabeled", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
         "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
         "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box",
         "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
         "otherfurniture", "otherprop")

# ScanNet 2D/3D semantic benchmark: 20 classes, given by their NYU40 ids.
SCANNET20_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
SCANNET20 = ("unlabeled",) + tuple(NYU40[i] for i in SCANNET20_NYU40_IDS)

CITYSCAPES19 = ("unlabeled", "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                "motorcycle", "bicycle")

SUN37 = ("unlabeled", "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
         "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor_mat",
         "clothes", "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain", "box", "whiteboard",
         "person", "night_stand", "toilet", "sink", "lamp", "bathtub", "bag")


@dataclass(frozen=True)
class ClassSet:
    """A label space. ``names[0]`` is "unlabeled" and id 0 is ignored by every loss and metric.

    Args:
        name: how sources and runs name it.
        names: class names, index = label id.
        same_as: the class set whose classes these are under another name (the same ids mean the same classes), so
            sources of both train and evaluate one model together; "" = its own classes.
    """
    name: str
    names: tuple[str, ...]
    same_as: str = ""

    @property
    def classes(self) -> str:
        """The name of the classes it labels: ``same_as``, or its own name."""
        return self.same_as or self.name

    @property
    def num_classes(self) -> int:
        """Number of real classes (ids 1..num_classes)."""
        return len(self.names) - 1

    @property
    def palette(self) -> np.ndarray:
        """uint8 (len(names), 3) colours; black for unlabeled, well-separated hues otherwise."""
        return make_palette(len(self.names))


def make_palette(n: int) -> np.ndarray:
    # Golden-ratio hue steps give distinct neighbouring colours for any n without a hand-made table.
    import colorsys
    out = np.zeros((n, 3), np.uint8)
    for i in range(1, n):
        h = (i * 0.618033988749895) % 1.0
        s = 0.65 + 0.35 * ((i // 7) % 2)
        v = 0.95 - 0.25 * ((i // 3) % 2)
        out[i] = [round(255 * c) for c in colorsys.hsv_to_rgb(h, s, v)]
    return out


CLASS_SETS = {cs.name: cs for cs in (
    ClassSet("nyu13", NYU13), ClassSet("nyu40", NYU40), ClassSet("scannet20", SCANNET20),
    ClassSet("cityscapes19", CITYSCAPES19), ClassSet("sun37", SUN37),
    # SynthRooms renders NYU13 labels; a separate name keeps runs self-describing, `same_as` lets a model trained on
    # them be scored on real NYUv2 frames (sim-to-real).
    ClassSet("synthrooms", NYU13, same_as="nyu13"),
)}


def get_class_set(name: str) -> ClassSet:
    try:
        return CLASS_SETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown class set {name!r}; known: {', '.join(CLASS_SETS)}") from None
