"""SUN RGB-D: the original per-frame folders, or the flat split folders some mirrors use.

Original layout (``SUNRGBD/kv1/NYUdata/NYU0001/``, ``SUNRGBD/kv2/kinect2data/000002_.../``, ...): every folder
holding ``image/`` and ``intrinsics.txt`` is one frame::

    FRAME/image/<name>.jpg       colour
    FRAME/depth_bfx/<name>.png   filled depth (default)       FRAME/depth/<name>.png   raw depth (raw_depth=True)
    FRAME/intrinsics.txt         3x3 camera matrix
    FRAME/seg.mat                optional: ``seglabel`` (ids into ``names``) and ``names`` (object names)

Flat layout: ``ROOT/<split>/rgb/<id>.png`` with ``ROOT/<split>/depth/<id>.png`` (filled) and ``depth_raw/`` (raw);
no intrinsics (unknown, NaN) and no labels.

Depth PNGs use SUN RGB-D's bit rotation: millimetres = ``(v >> 3) | (v << 13)`` on uint16.

Labels: ``seg.mat`` names every object; names equal to one of the 37 classes (case, ``_`` and a few spellings
normalised) map to it, every other object is unlabeled. This follows the per-frame annotation; the official
``SUNRGBD2Dseg.mat`` maps some rarer names too. Splits of the original layout come from ``allsplit.mat`` (toolbox
``traintestSUNRGBD/``: ``train`` / ``test``, ``"val"`` reads ``"test"``) or a ``<split>.txt`` of frame folders relative
to ROOT, both looked up in ROOT.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import SUN37
from ...extras import optional_import
from ..registry import DatasetFormat
from .common import (UNKNOWN_INTRINSICS, Reader, read_matrix_intrinsics, read_rgb, read_uint16, sample_from,
                     sorted_files)

SPLIT_ALIASES = {"val": "test"}
_SYNONYMS = {"refrigerator": "fridge", "television": "tv", "nightstand": "night_stand", "bookcase": "bookshelf",
             "shelf": "shelves", "floormat": "floor_mat", "showercurtain": "shower_curtain"}
SUN37_IDS = {name: i for i, name in enumerate(SUN37) if i}


def decode_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth PNG values (uint16) -> millimetres (uint16): undo the 3-bit rotation."""
    v = raw.astype(np.uint16)
    return (v >> 3) | (v << 13)


def sun37_id(name: str) -> int:
    """Object name of a ``seg.mat`` -> SUN37 class id (0 when the name is not one of the 37 classes)."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    key = _SYNONYMS.get(key.replace("_", ""), key)
    return SUN37_IDS.get(key, 0)


def flat_splits(root: str | Path) -> tuple[str, ...]:
    """The split folders (``<split>/rgb/``) of a flat-layout ``root``, e.g. ``("train", "val")``; empty for the
    original layout."""
    return tuple(d.name for d in sorted(Path(root).iterdir()) if (d / "rgb").is_dir())


class SUNRGBD(Reader):
    """SUN RGB-D frames in either layout (module docstring).

    Args:
        root: the ``SUNRGBD`` folder (original layout) or the folder holding ``<split>/rgb`` (flat layout).
        split: ``"train"``, ``"test"`` (``"val"`` = ``"test"`` in the original layout; the flat layout uses its own
            folder names), or None for every frame.
        raw_depth: raw sensor depth (holes) instead of the filled maps.
        depth_scale: depth units per metre after undoing the bit rotation (default 1000).
        require_labels: raise for a frame without ``seg.mat`` instead of omitting the key.
    """

    class_set = "sun37"

    def __init__(self, root: str | Path, *, split: str | None = "train", raw_depth: bool = False,
                 depth_scale: float | None = None, require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        self.depth_scale = depth_scale or 1000.0
        self.raw_depth = raw_depth
        splits = flat_splits(self.root)
        flat = [self.root / name for name in splits]
        if flat and split is not None:
            if split not in splits:
                raise FileNotFoundError(f"{self.root / split / 'rgb'}: no such split folder (splits here: "
                                        f"{', '.join(splits)})")
            flat = [self.root / split]
        if flat:
            if require_labels:
                raise ValueError(f"{self.root}: the flat SUN RGB-D layout has no labels")
            depth_dir = "depth_raw" if raw_depth else "depth"
            for d in flat:
                for rgb in sorted_files(d / "rgb", (".png", ".jpg")):
                    depth = d / depth_dir / f"{rgb.stem}.png"
                    if depth.is_file():
                        self.frames.append((rgb, depth, None))
                    else:
                        self.problems.append(f"{rgb}: no matching {depth_dir}/{rgb.stem}.png")
        else:
            folders = self._frame_folders()
            wanted = self._split(split)
            for folder in folders:
                rel = folder.relative_to(self.root).as_posix()
                if wanted is None or rel in wanted:
                    self._add_original(folder)
        self._require_frames(f"split {split!r}; expected frame folders with image/ and intrinsics.txt, "
                             f"or <split>/rgb/ with depth/")

    def _frame_folders(self) -> list[Path]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if "image" in dirnames and "intrinsics.txt" in filenames:
                found.append(Path(dirpath))
                dirnames.clear()  # a frame's own subfolders (fullres/, ...) are not frames
            dirnames.sort()
        return found

    def _split(self, split: str | None) -> set[str] | None:
        if split is None:
            return None
        listing = self.root / f"{split}.txt"
        if listing.is_file():
            return {line.strip().strip("/") for line in listing.read_text().splitlines() if line.strip()}
        allsplit = self.root / "allsplit.mat"
        if not allsplit.is_file():
            raise FileNotFoundError(f"{self.root}: split {split!r} needs {listing.name} (frame folders relative to "
                                    f"the root) or the toolbox's allsplit.mat here; or use split 'all'")
        name = SPLIT_ALIASES.get(split, split)
        if name not in ("train", "test"):
            raise ValueError(f"{allsplit}: holds the train and test splits (val = test), not {split!r}")
        sio = optional_import("scipy.io", "Reading SUN RGB-D allsplit.mat")
        paths = sio.loadmat(str(allsplit))[f"all{name}"].ravel()
        # Entries are absolute paths on the authors' server: ".../SUNRGBD/kv2/kinect2data/000002_..."
        return {str(np.ravel(p)[0]).split("SUNRGBD/", 1)[-1].strip("/") for p in paths}

    def _add_original(self, folder: Path) -> None:
        images = sorted_files(folder / "image", (".jpg", ".png"))
        depths = sorted_files(folder / ("depth" if self.raw_depth else "depth_bfx"), (".png",))
        if len(images) != 1 or len(depths) != 1:
            self.problems.append(f"{folder}: expected one image/*.jpg and one "
                                 f"{'depth' if self.raw_depth else 'depth_bfx'}/*.png, found "
                                 f"{len(images)} and {len(depths)}")
            return
        self.frames.append((images[0], depths[0], folder))

    def frame_id(self, frame) -> str:
        rgb_path, _, folder = frame
        if folder is None:
            return rgb_path.stem
        return re.sub(r"[^A-Za-z0-9_.\-]", "_", folder.relative_to(self.root).as_posix()) or folder.name

    def labelled(self, index: int) -> bool:
        folder = self.frames[index][2]
        return folder is not None and (folder / "seg.mat").is_file()

    def load(self, frame) -> dict:
        rgb_path, depth_path, folder = frame
        depth = decode_depth(read_uint16(depth_path)).astype(np.float32) / self.depth_scale
        frame_id = self.frame_id(frame)
        if folder is None:
            return sample_from(read_rgb(rgb_path), depth, UNKNOWN_INTRINSICS, frame_id, paths=[rgb_path, depth_path])
        extra = {}
        seg = folder / "seg.mat"
        if seg.is_file():
            extra["label"] = self._labels(seg)
        else:
            self._missing_label(seg, frame_id)
        return sample_from(read_rgb(rgb_path), depth, read_matrix_intrinsics(folder / "intrinsics.txt"), frame_id,
                           paths=[rgb_path, depth_path], **extra)

    def _labels(self, path: Path) -> np.ndarray:
        sio = optional_import("scipy.io", "Reading SUN RGB-D seg.mat")
        try:
            mat = sio.loadmat(str(path))
            seglabel, names = np.asarray(mat["seglabel"]), np.ravel(mat["names"])
        except Exception as e:  # scipy raises several types for truncated or foreign files
            raise ValueError(f"{path}: unreadable seg.mat ({type(e).__name__}: {e})") from None
        lut = np.zeros(len(names) + 1, np.int64)
        for i, name in enumerate(names, start=1):
            lut[i] = sun37_id(str(np.ravel(name)[0]) if np.size(name) else "")
        if seglabel.max(initial=0) > len(names):
            raise ValueError(f"{path}: seglabel id {seglabel.max()} has no entry in names ({len(names)} names)")
        return lut[seglabel.astype(np.int64)]


@dataclass
class SUNRGBDOptions:
    """Options of a sunrgbd data source."""
    raw_depth: bool = False  # raw sensor depth (holes) instead of the filled maps


def _detect(path: Path) -> bool:
    return path.is_dir() and (any((d / "rgb").is_dir() and (d / "depth").is_dir() for d in path.iterdir())
                              or _has_frame(path))


def _has_frame(root: Path, max_depth: int = 4) -> bool:
    """A frame folder of the original layout (``image/`` beside ``intrinsics.txt``) within ``max_depth`` levels."""
    for dirpath, dirnames, filenames in os.walk(root):
        if "image" in dirnames and "intrinsics.txt" in filenames:
            return True
        if len(Path(dirpath).relative_to(root).parts) >= max_depth:
            dirnames.clear()
    return False


# Default splits: the official train / test, except in a flat folder, whose split folders are its own (mirrors ship
# train / val).
DATASET_FORMAT = DatasetFormat(
    "sunrgbd", open=lambda src, *, root, split, depth_scale, require_labels, **_: SUNRGBD(
        root, split=split, raw_depth=src.options.raw_depth, depth_scale=depth_scale, require_labels=require_labels),
    options=SUNRGBDOptions, class_set=SUNRGBD.class_set,
    default_splits=lambda root: (root.is_dir() and flat_splits(root)) or ("train", "test"), scaled_depth=True,
    detect=_detect)
