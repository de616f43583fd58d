"""Pieces every format reader shares: the reader base class, image decoding, intrinsics files."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..frames import INDOOR_DEPTH_RANGE, missing_label, read_image, read_rgb  # noqa: F401 (read_rgb: the readers import it here)
from ..sample import make_sample

logger = logging.getLogger("mask3d_vit.data")

# fx, fy, cx, cy for sources that do not publish a calibration: NaN says "unknown" instead of a plausible guess.
UNKNOWN_INTRINSICS = (float("nan"),) * 4


class NoFramesError(ValueError):
    """The source holds no frame of the split asked for (``data convert`` passes over such a default split)."""


class Reader(torch.utils.data.Dataset):
    """Base of the format readers: an indexed list of frames, each decoded on demand into a sample dict.

    Samples come at the source's native resolution with invalid depth as 0 and no depth range applied
    (:func:`mask3d_vit.data.build.build_dataset` crops, resizes and limits the range). Subclasses fill ``frames``
    (one entry per frame, whatever the format needs to load it) and implement :meth:`load` and :meth:`frame_id`,
    and :meth:`labelled` when their frames may carry labels.

    Class attributes:
        class_set: name of the label space of ``label`` maps (see :mod:`mask3d_vit.data.classes`), None = no labels.
        depth_range: plausible (low, high) median depth in metres; outside it the depth scale is probably wrong.
    """

    class_set: str | None = None
    depth_range: tuple[float, float] = INDOOR_DEPTH_RANGE

    def __init__(self, root: str | Path, *, require_labels: bool = False):
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.root}: no such file or folder")
        self.require_labels = require_labels
        self.frames: list = []
        self.problems: list[str] = []  # found while indexing (e.g. a file without its partner), for `data check`

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        return self.load(self.frames[index])

    def load(self, frame) -> dict:
        """Decode one entry of ``frames`` into a sample dict."""
        raise NotImplementedError

    def frame_id(self, frame) -> str:
        """Stable id of one entry of ``frames`` (a valid file stem), known without decoding the frame."""
        raise NotImplementedError

    def labelled(self, index: int) -> bool:
        """Whether frame ``index`` has a label map, told from the files without decoding them (``data check`` counts
        labelled frames, ``data convert --labelled-only`` keeps them)."""
        if self.class_set is None:
            return False
        raise NotImplementedError(f"{type(self).__name__} cannot tell its labelled frames from their files")

    def _require_frames(self, what: str) -> None:
        if not self.frames:
            raise NoFramesError(f"{self.root}: no frames found ({what})")

    def _missing_label(self, path: Path, frame_id: str) -> None:
        """Call when a frame has no label map; raises only when labels are required."""
        if self.require_labels:
            raise missing_label(path, frame_id)


def read_uint16(path: Path, what: str = "depth") -> np.ndarray:
    """A 16-bit single-channel PNG as uint16 (H, W); 8-bit or colour files are rejected by name."""
    raw = read_image(path)
    if raw.ndim != 2 or raw.dtype not in (np.uint16, np.int32):
        raise ValueError(f"{path}: {what} must be a 16-bit single-channel PNG, got {raw.dtype} {raw.shape}")
    return raw.astype(np.uint16)


def read_ids(path: Path, what: str) -> np.ndarray:
    """A label or instance PNG (8- or 16-bit, single channel) as int64 (H, W)."""
    raw = read_image(path)
    if raw.ndim != 2:
        raise ValueError(f"{path}: {what} map must be a single-channel PNG of ids, got shape {raw.shape}")
    return raw.astype(np.int64)


def read_matrix_intrinsics(path: Path) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy from a text file holding a 3x3 or 4x4 camera matrix (ScanNet, SUN RGB-D)."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable intrinsics ({e})") from None
    if len(values) not in (9, 16):
        raise ValueError(f"{path}: expected a 3x3 or 4x4 matrix, found {len(values)} numbers")
    k = np.asarray(values).reshape(3 if len(values) == 9 else 4, -1)
    return k[0, 0], k[1, 1], k[0, 2], k[1, 2]


def resize_to(array: np.ndarray, height: int, width: int, *, nearest: bool, path: Path,
              tolerance: float = 0.02) -> np.ndarray:
    """Resize an image or id map to (height, width) when it is the same view at another resolution.

    Sources such as ScanNet store colour at a higher resolution than depth; the aspect ratios must agree (within
    ``tolerance``) or the files do not show the same view, which is an error naming ``path``.
    """
    h, w = array.shape[:2]
    if (h, w) == (height, width):
        return array
    if abs((w / h) / (width / height) - 1) > tolerance:
        raise ValueError(f"{path}: {w}x{h} does not match the frame's {width}x{height} (different aspect ratio)")
    if nearest:
        rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
        return array[rows[:, None], cols[None, :]]
    return np.asarray(Image.fromarray(array).resize((width, height), Image.BILINEAR))


def sample_from(rgb: np.ndarray, depth: np.ndarray, intrinsics, frame_id: str, *, paths: Sequence[Path],
                label: np.ndarray | None = None, instance: np.ndarray | None = None) -> dict:
    """:func:`make_sample` with size errors that name the frame's files."""
    try:
        return make_sample(rgb, depth, intrinsics, frame_id, label=label, instance=instance)
    except ValueError as e:
        raise ValueError(f"{', '.join(str(p) for p in paths)}: {e}") from None


def consecutive_ids(ids: np.ndarray) -> np.ndarray:
    """Integer id map (0 = none) -> int64 ids 1..K in sorted order of the originals, 0 kept (same partition)."""
    values, inverse = np.unique(ids, return_inverse=True)
    inverse = inverse.reshape(ids.shape)
    return inverse if values[0] == 0 else inverse + 1


def sorted_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes`` (case-insensitive), in natural order of their stems."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.suffix.lower() in suffixes and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.stem))


def natural_key(text: str):
    """Sort key that orders "2" before "10"."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def valid_median(depth: torch.Tensor) -> float | None:
    """Median of the valid (finite, > 0) depths, None when there are none."""
    d = depth[torch.isfinite(depth) & (depth > 0)]
    return float(d.median()) if d.numel() else None


def units_problem(median: float, depth_range: Sequence[float]) -> str | None:
    """A message when a median depth (metres) lies outside the plausible range, else None."""
    low, high = depth_range
    if low <= median <= high:
        return None
    return (f"median depth is {median:.4g} m, outside the plausible {low:g}-{high:g} m: the depth scale (units) "
            f"is probably wrong")
