"""Cityscapes: left images, fine labels mapped to the 19 training classes, depth from disparity.

Layout (as downloaded; ``<split>`` is train, val, test or train_extra)::

    ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    ROOT/disparity/<split>/<city>/<name>_disparity.png     uint16 p: disparity = (p - 1) / 256 px, p = 0 invalid
    ROOT/camera/<split>/<city>/<name>_camera.json           extrinsic.baseline (m), intrinsic.fx, fy, u0, v0
    ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png   optional; _gtFine_instanceIds.png optional

Depth = baseline * fx / disparity; pixels without a (positive) disparity have no depth. Label ids map to the 19
train ids of cityscapesScripts' ``labels.py``; the library stores train id + 1, with 0 for ignored (train id 255)
pixels (see :mod:`mask3d_vit.data.classes`). Instances are the ``instanceIds`` values >= 1000 (id * 1000 + k).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..registry import DatasetFormat
from .common import Reader, consecutive_ids, read_ids, read_rgb, read_uint16, sample_from, sorted_files

# cityscapesScripts labels.py: labelId -> trainId (255 = ignored); ids 0-33, license plate (-1) is ignored too.
LABEL_TO_TRAIN = np.full(256, 255, np.int64)
LABEL_TO_TRAIN[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]] = np.arange(19)
# Library convention: train id + 1, ignored -> 0.
LABEL_TO_LIBRARY = np.where(LABEL_TO_TRAIN == 255, 0, LABEL_TO_TRAIN + 1)
SPLITS = ("train", "val", "test", "train_extra")


def disparity_to_depth(raw: np.ndarray, baseline: float, fx: float) -> np.ndarray:
    """Cityscapes disparity PNG values (uint16) -> depth float32 metres, 0 where there is no valid disparity."""
    disparity = (raw.astype(np.float32) - 1.0) / 256.0
    ok = (raw > 0) & (disparity > 0)
    return np.where(ok, baseline * fx / np.where(ok, disparity, 1.0), 0.0).astype(np.float32)


class Cityscapes(Reader):
    """Cityscapes frames with metric depth from disparity (layout in the module docstring).

    Args:
        root: the Cityscapes folder (holding ``leftImg8bit/``, ``disparity/``, ``camera/``, ``gtFine/``).
        split: ``"train"``, ``"val"``, ``"test"``, ``"train_extra"``, or None for every split present.
        require_labels: raise for a frame without ``gtFine`` labels instead of omitting the key.
    """

    class_set = "cityscapes19"
    depth_range = (1.0, 200.0)  # street scenes: medians of a few to a few tens of metres

    def __init__(self, root: str | Path, *, split: str | None = "train", require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        if split is not None and split not in SPLITS:
            raise ValueError(f"Cityscapes split {split!r} is unknown; choose one of {', '.join(SPLITS)} or all")
        images = self.root / "leftImg8bit"
        splits = [split] if split else [s for s in SPLITS if (images / s).is_dir()]
        for name in splits:
            if not (images / name).is_dir():
                raise FileNotFoundError(f"{images / name}: split folder missing")
            if require_labels and not (self.root / "gtFine" / name).is_dir():
                raise FileNotFoundError(f"{self.root / 'gtFine' / name}: labels are required but gtFine is missing")
            for city in sorted(d for d in (images / name).iterdir() if d.is_dir()):
                for rgb in sorted_files(city, (".png",)):
                    if not rgb.stem.endswith("_leftImg8bit"):
                        continue
                    missing = [p for p in self._partners(rgb).values() if not p.is_file()]
                    if missing:
                        self.problems.append(f"{rgb}: missing {', '.join(str(p) for p in missing)}")
                    else:
                        self.frames.append(rgb)
        self._require_frames(f"split {split!r}; expected leftImg8bit/<split>/<city>/*_leftImg8bit.png with "
                             f"disparity/ and camera/ partners")

    def _partners(self, rgb: Path) -> dict[str, Path]:
        """The files that must exist beside a colour image (the gtFine maps are optional)."""
        return {k: v for k, v in self._paths(rgb).items() if k in ("disparity", "camera")}

    def _paths(self, rgb: Path) -> dict[str, Path]:
        rel = rgb.relative_to(self.root / "leftImg8bit").parent
        base = rgb.stem[: -len("_leftImg8bit")]
        return {"disparity": self.root / "disparity" / rel / f"{base}_disparity.png",
                "camera": self.root / "camera" / rel / f"{base}_camera.json",
                "label": self.root / "gtFine" / rel / f"{base}_gtFine_labelIds.png",
                "instance": self.root / "gtFine" / rel / f"{base}_gtFine_instanceIds.png"}

    def frame_id(self, rgb_path: Path) -> str:
        return rgb_path.stem[: -len("_leftImg8bit")]

    def labelled(self, index: int) -> bool:
        return self._paths(self.frames[index])["label"].is_file()

    def load(self, rgb_path: Path) -> dict:
        paths = self._paths(rgb_path)
        try:
            calib = json.loads(paths["camera"].read_text())
            baseline = float(calib["extrinsic"]["baseline"])
            k = calib["intrinsic"]
            fx, fy, cx, cy = (float(k[key]) for key in ("fx", "fy", "u0", "v0"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{paths['camera']}: unreadable camera calibration ({type(e).__name__}: {e})") from None
        if not (baseline > 0 and fx > 0):
            raise ValueError(f"{paths['camera']}: baseline ({baseline}) and fx ({fx}) must be positive")
        depth = disparity_to_depth(read_uint16(paths["disparity"], "disparity"), baseline, fx)
        frame_id = self.frame_id(rgb_path)
        extra = {}
        if paths["label"].is_file():
            ids = read_ids(paths["label"], "label")
            if ids.max() > 255:
                raise ValueError(f"{paths['label']}: label id {ids.max()} is not a Cityscapes label id")
            extra["label"] = LABEL_TO_LIBRARY[ids]
        else:
            self._missing_label(paths["label"], frame_id)
        if paths["instance"].is_file():
            raw = read_ids(paths["instance"], "instance")
            raw[raw < 1000] = 0  # values below 1000 are label ids of stuff or crowd regions, not instances
            extra["instance"] = consecutive_ids(raw)
        return sample_from(read_rgb(rgb_path), depth, (fx, fy, cx, cy), frame_id,
                           paths=[rgb_path, paths["disparity"]], **extra)


# Converted depth in centimetres: street depth exceeds what uint16 millimetres hold (65 m).
DATASET_FORMAT = DatasetFormat(
    "cityscapes", open=lambda src, *, root, split, require_labels, **_: Cityscapes(
        root, split=split, require_labels=require_labels),
    class_set=Cityscapes.class_set, default_splits=("train", "val"), depth_scale=100.0,
    detect=lambda path: (path / "leftImg8bit").is_dir())
