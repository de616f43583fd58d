"""NYU Depth v2 (labeled set): the official ``nyu_depth_v2_labeled.mat``, or its frames exported as PNGs.

``nyu_depth_v2_labeled.mat`` is MATLAB v7.3, i.e. HDF5, read lazily with h5py (one frame at a time). MATLAB stores
arrays column-major, so h5py sees every array transposed::

    images     uint8   (N, 3, W, H)   RGB
    depths     float   (N, W, H)      metres, inpainted (no holes)
    rawDepths  float   (N, W, H)      metres, sensor depth, 0 = hole       (raw_depth=True)
    labels     uint16  (N, W, H)      894 raw object classes, 0 = unlabeled
    instances  uint8   (N, W, H)      instance number within each raw class, 0 = none

The PNG layout, as several NYUv2 repositories export it::

    ROOT/rgb/0003.png    depth/0003.png (uint16 millimetres)    label40/0003.png, label13/0003.png (optional)
    ROOT/instance/0003.png (optional)

File stems are the 1-based indices into the 1449 labeled frames. Both layouts use the official split (795 train /
654 test; NYUv2 has no validation split, so ``"val"`` reads ``"test"``) and the 894 -> 40 -> 13 class mappings,
shipped with the package in ``tables/nyuv2.json`` (from github.com/ankurhanda/nyuv2-meta-data).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...extras import optional_import
from ..registry import DatasetFormat
from .common import Reader, consecutive_ids, read_ids, read_rgb, read_uint16, sample_from, sorted_files

NUM_LABELED = 1449
# Colour camera of the NYU toolbox (camera_params.m), 640x480.
INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
CLASS_SETS = ("nyu40", "nyu13")
SPLIT_ALIASES = {"val": "test"}
TABLES = Path(__file__).resolve().parent.parent / "tables" / "nyuv2.json"


@functools.lru_cache(maxsize=None)
def tables() -> dict:
    """The packaged NYUv2 tables: ``train`` / ``test`` (1-based frame indices), ``map894to40``, ``map40to13``."""
    return json.loads(TABLES.read_text())


@functools.lru_cache(maxsize=None)
def label_lut(class_set: str) -> np.ndarray:
    """uint8 lookup table raw id (0..894) -> id in ``class_set`` (0 stays unlabeled)."""
    if class_set not in CLASS_SETS:
        raise ValueError(f"NYUv2 class set {class_set!r} is unknown; choose one of {', '.join(CLASS_SETS)}")
    t = tables()
    to40 = np.asarray([0] + t["map894to40"], np.uint8)
    if class_set == "nyu40":
        return to40
    return np.asarray([0] + t["map40to13"], np.uint8)[to40]


def split_indices(split: str | None) -> list[int] | None:
    """1-based labeled-set indices of the official ``split`` (None = every frame)."""
    if split is None:
        return None
    name = SPLIT_ALIASES.get(split, split)
    if name not in ("train", "test"):
        raise ValueError(f"NYUv2 split {split!r} is unknown; choose train, test (or val = test), or all")
    return tables()[name]


def unique_instances(raw_labels: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """NYUv2 numbers instances within each raw class; give every (class, number) pair its own id (1..K)."""
    key = raw_labels.astype(np.int64) * 256 + instances
    key[(raw_labels == 0) | (instances == 0)] = 0
    return consecutive_ids(key)


def open_nyuv2(root: str | Path, **kwargs) -> Reader:
    """The .mat reader when ``root`` is a file, the PNG-folder reader when it is a folder (same keyword arguments)."""
    return NYUv2Mat(root, **kwargs) if Path(root).is_file() else NYUv2Folder(root, **kwargs)


class NYUv2Mat(Reader):
    """Frames of ``nyu_depth_v2_labeled.mat``, decoded one at a time.

    Args:
        root: path of ``nyu_depth_v2_labeled.mat``.
        split: ``"train"``, ``"test"`` (``"val"`` = ``"test"``) or None for all 1449 frames.
        class_set: ``"nyu40"`` or ``"nyu13"``.
        raw_depth: read ``rawDepths`` (sensor depth with holes) instead of the inpainted ``depths``.
        depth_scale: unused (the file stores metres); must be None.
        require_labels: kept for the common reader signature (every frame of the file has labels).
    """

    def __init__(self, root: str | Path, *, split: str | None = "train", class_set: str = "nyu40",
                 raw_depth: bool = False, depth_scale: float | None = None, require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        if depth_scale is not None:
            raise ValueError(f"{self.root}: the .mat file stores depth in metres; depth_scale does not apply")
        self.lut = label_lut(class_set)
        self.class_set = class_set
        self.depth_key = "rawDepths" if raw_depth else "depths"
        self._file = None
        self._pid = None
        f = self._open()
        for key in ("images", self.depth_key, "labels", "instances"):
            if key not in f:
                raise ValueError(f"{self.root}: no {key!r} array; is this nyu_depth_v2_labeled.mat?")
        images = f["images"]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.root}: 'images' has shape {images.shape}, expected (N, 3, W, H)")
        n = images.shape[0]
        for key in (self.depth_key, "labels", "instances"):
            if f[key].shape != (n,) + images.shape[2:]:
                raise ValueError(f"{self.root}: {key!r} has shape {f[key].shape}, expected {(n,) + images.shape[2:]}")
        wanted = split_indices(split)
        if wanted is not None and n != NUM_LABELED:
            raise ValueError(f"{self.root}: holds {n} frames, but the official split indexes the {NUM_LABELED} "
                             f"labeled frames; use split 'all'")
        self.frames = wanted or list(range(1, n + 1))

    def _open(self):
        # h5py handles must not cross fork(): every DataLoader worker opens its own.
        if self._file is None or self._pid != os.getpid():
            h5py = optional_import("h5py", "Reading NYUv2 .mat files")
            try:
                self._file = h5py.File(self.root, "r")
            except OSError as e:
                raise ValueError(f"{self.root}: not a MATLAB v7.3 (HDF5) file ({e})") from None
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None, "_pid": None}

    def frame_id(self, index: int) -> str:
        return f"{index:04d}"

    def labelled(self, index: int) -> bool:
        return True  # the file labels every frame

    def load(self, index: int) -> dict:
        f = self._open()
        i = index - 1
        try:
            rgb = np.ascontiguousarray(f["images"][i].transpose(2, 1, 0))
            depth = f[self.depth_key][i].T.astype(np.float32)
            raw = f["labels"][i].T
            inst = f["instances"][i].T
        except (OSError, ValueError) as e:  # a truncated download fails here, frame by frame
            raise ValueError(f"{self.root}: frame {index} is unreadable ({e})") from None
        if raw.max(initial=0) >= len(self.lut):
            raise ValueError(f"{self.root}: frame {index} has raw label {raw.max()} beyond the 894 NYUv2 classes")
        return sample_from(rgb, depth, INTRINSICS, self.frame_id(index), paths=[self.root],
                           label=self.lut[raw], instance=unique_instances(raw, inst))


class NYUv2Folder(Reader):
    """NYUv2 frames exported as PNGs (layout in the module docstring).

    Args:
        root: the folder holding ``rgb/`` and ``depth/``.
        split: ``"train"``, ``"test"`` (``"val"`` = ``"test"``) or None for every frame present.
        class_set: ``"nyu40"`` (reads ``label40/``) or ``"nyu13"`` (reads ``label13/``).
        raw_depth: unused for this layout (its depth is what was exported); must be False.
        depth_scale: stored depth units per metre (default 1000, millimetres).
        require_labels: raise for a frame without a label map instead of omitting the key.
    """

    def __init__(self, root: str | Path, *, split: str | None = "train", class_set: str = "nyu40",
                 raw_depth: bool = False, depth_scale: float | None = None, require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        if class_set not in CLASS_SETS:
            raise ValueError(f"NYUv2 class set {class_set!r} is unknown; choose one of {', '.join(CLASS_SETS)}")
        if raw_depth:
            raise ValueError(f"{self.root}: a PNG folder holds one depth map per frame; raw_depth does not apply")
        self.class_set = class_set
        self.label_dir = self.root / f"label{class_set[3:]}"
        self.depth_scale = depth_scale or 1000.0
        wanted = split_indices(split)
        wanted = None if wanted is None else set(wanted)
        for rgb in sorted_files(self.root / "rgb", (".png", ".jpg", ".jpeg")):
            if not rgb.stem.isdigit() or not 1 <= int(rgb.stem) <= NUM_LABELED:
                self.problems.append(f"{rgb}: file stem must be the 1-based NYUv2 frame index (1..{NUM_LABELED})")
            elif not (self.root / "depth" / f"{rgb.stem}.png").is_file():
                self.problems.append(f"{rgb}: no matching depth/{rgb.stem}.png")
            elif wanted is None or int(rgb.stem) in wanted:
                self.frames.append(rgb)
        self._require_frames(f"expected rgb/<index>.png with depth/<index>.png, split {split!r}")

    def frame_id(self, rgb_path: Path) -> str:
        return rgb_path.stem

    def labelled(self, index: int) -> bool:
        return (self.label_dir / f"{self.frames[index].stem}.png").is_file()

    def load(self, rgb_path: Path) -> dict:
        stem = rgb_path.stem
        depth_path = self.root / "depth" / f"{stem}.png"
        depth = read_uint16(depth_path).astype(np.float32) / self.depth_scale
        extra = {}
        label_path = self.label_dir / f"{stem}.png"
        if label_path.is_file():
            extra["label"] = read_ids(label_path, "label")
        else:
            self._missing_label(label_path, stem)
        instance_path = self.root / "instance" / f"{stem}.png"
        if instance_path.is_file():
            extra["instance"] = read_ids(instance_path, "instance")
        return sample_from(read_rgb(rgb_path), depth, INTRINSICS, stem, paths=[rgb_path, depth_path], **extra)


@dataclass
class NYUv2Options:
    """Options of an nyuv2 data source."""
    class_set: str = "nyu40"  # label space: nyu40 or nyu13
    raw_depth: bool = False   # .mat: rawDepths (sensor depth with holes) instead of the inpainted depths


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".mat"
    return (path / "label40").is_dir() or (path / "label13").is_dir()


DATASET_FORMAT = DatasetFormat(
    "nyuv2", open=lambda src, *, root, split, depth_scale, require_labels, **_: open_nyuv2(
        root, split=split, class_set=src.options.class_set, raw_depth=src.options.raw_depth,
        depth_scale=depth_scale, require_labels=require_labels),
    options=NYUv2Options, class_set=lambda src: src.options.class_set, default_splits=("train", "test"),
    scaled_depth=True, detect=_detect)
