"""Generic RGB-D pairs: a user's own captures, for pre-training (no labels).

Layout::

    ROOT/rgb/      colour images (.png / .jpg); the folder may also be named color, colour, image or images
    ROOT/depth/    single-channel 16-bit PNGs, metres = value / depth_scale (0 = no depth)
    ROOT/intrinsics.txt   optional: "fx fy cx cy", or a 3x3 camera matrix; without it intrinsics are unknown (NaN)

A colour image and a depth image pair up when their file stems are equal. When both stems are numbers (timestamps,
as in TUM RGB-D: ``rgb/1305031102.175304.png`` and ``depth/1305031102.160407.png``) each colour image takes the
nearest depth image within ``max_dt`` seconds instead. Common scales: 1000 (millimetres: Kinect v1, RealSense,
ScanNet), 5000 (TUM RGB-D), 10000 (Kinect v2 exported in 0.1 mm).
"""
from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np

from ...config import ConfigError
from ..registry import DatasetFormat
from .common import (UNKNOWN_INTRINSICS, Reader, logger, read_matrix_intrinsics, read_rgb, read_uint16, sample_from,
                     sorted_files)

RGB_DIRS = ("rgb", "color", "colour", "image", "images")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _number(stem: str) -> float | None:
    try:
        return float(stem)
    except ValueError:
        return None


class Pairs(Reader):
    """Colour + depth image pairs of one folder (layout in the module docstring).

    Args:
        root: the folder holding the colour and depth folders.
        depth_scale: stored depth units per metre.
        max_dt: largest timestamp gap (seconds) between paired images with numeric stems (TUM uses 0.02).
    """

    def __init__(self, root: str | Path, *, depth_scale: float, max_dt: float = 0.02):
        super().__init__(root)
        if not depth_scale > 0:
            raise ValueError(f"{self.root}: depth_scale must be a positive number of units per metre")
        self.depth_scale = float(depth_scale)
        rgb_dir = next((self.root / d for d in RGB_DIRS if (self.root / d).is_dir()), None)
        if rgb_dir is None or not (self.root / "depth").is_dir():
            raise FileNotFoundError(f"{self.root}: expected a colour folder ({', '.join(RGB_DIRS)}) and depth/")
        self.intrinsics = self._intrinsics()
        rgbs = sorted_files(rgb_dir, IMAGE_SUFFIXES)
        depths = {p.stem: p for p in sorted_files(self.root / "depth", (".png",))}
        times = sorted((t, p) for p in depths.values() if (t := _number(p.stem)) is not None)
        used = set()
        for rgb in rgbs:
            depth = depths.get(rgb.stem)
            t = _number(rgb.stem)
            if depth is None and t is not None and times:
                j = bisect.bisect_left(times, (t,))
                near = min(times[max(j - 1, 0):j + 1], key=lambda tp: abs(tp[0] - t))
                depth = near[1] if abs(near[0] - t) <= max_dt else None
            if depth is None:
                self.problems.append(f"{rgb}: no depth image pairs with it in {self.root / 'depth'}")
                continue
            used.add(depth)
            self.frames.append((rgb, depth))
        self.problems += [f"{p}: no colour image pairs with it" for p in depths.values() if p not in used]
        self._require_frames(f"colour images in {rgb_dir} paired with depth/*.png")
        if self.problems:
            logger.warning("%s: %d files without a partner were left out (first: %s)", self.root,
                           len(self.problems), self.problems[0])

    def _intrinsics(self):
        path = self.root / "intrinsics.txt"
        if not path.is_file():
            return UNKNOWN_INTRINSICS
        values = path.read_text().split()
        if len(values) == 4:
            try:
                return tuple(float(v) for v in values)
            except ValueError:
                raise ValueError(f"{path}: expected 'fx fy cx cy' numbers, got {' '.join(values)!r}") from None
        return read_matrix_intrinsics(path)

    def frame_id(self, frame: tuple[Path, Path]) -> str:
        return frame[0].stem

    def load(self, frame: tuple[Path, Path]) -> dict:
        rgb_path, depth_path = frame
        depth = read_uint16(depth_path).astype(np.float32) / self.depth_scale
        return sample_from(read_rgb(rgb_path), depth, self.intrinsics, self.frame_id(frame),
                           paths=[rgb_path, depth_path])


def _open(src, *, root: Path, depth_scale: float | None, require_labels: bool, **_) -> Pairs:
    if require_labels:
        raise ConfigError(f"{root}: pairs sources have no labels; fine-tuning needs a labelled format")
    if depth_scale is None:
        raise ConfigError(f"{root}: pairs sources need depth_scale (stored units per metre): 1000 for millimetres, "
                          "5000 for TUM RGB-D, 10000 for Kinect v2 0.1 mm")
    return Pairs(root, depth_scale=depth_scale)


# Splits: none, every split reads all frames. Detection: any folder with depth/, so only when no other format fits.
DATASET_FORMAT = DatasetFormat("pairs", open=_open, class_set=None, default_splits=("all",), scaled_depth=True,
                       detect=lambda path: (path / "depth").is_dir(), generic=True)
