"""ScanNet v2: raw ``.sens`` streams, exported frame folders and ``scannet_frames_25k``.

``.sens`` (ScanNet's SensorData, version 4, little-endian)::

    header   uint32 version (4) | uint64 n + n bytes sensor name
             float32[16] colour intrinsics, colour extrinsics, depth intrinsics, depth extrinsics (4x4, row-major)
             int32 colour compression (0 raw, 1 png, 2 jpeg) | int32 depth compression (0 raw, 1 zlib, 2 occi)
             uint32 colour width, height, depth width, height | float32 depth shift (units per metre, 1000)
             uint64 frame count
    frame    float32[16] camera-to-world pose | uint64 colour timestamp, depth timestamp
             uint64 colour bytes, depth bytes | colour data | depth data (uint16 depth_height x depth_width)

Frames are read every ``frame_skip``-th frame (25, as Pri3D and Mask3D) with colour resized to the depth resolution.

Exported frame folders (SensorData.py export plus the ``_2d-label-filt`` / ``_2d-instance-filt`` zips)::

    ROOT/sceneXXXX_XX/color/<n>.jpg  depth/<n>.png (uint16 mm)  intrinsic/intrinsic_depth.txt
                     label-filt/<n>.png (raw ScanNet category ids)  instance-filt/<n>.png

Raw category ids map to NYU40 through ``scannetv2-labels.combined.tsv`` (columns ``id`` and ``nyu40id``; looked up in
ROOT and its parent). ``scannet_frames_25k`` has the same scene folders with ``label/`` already in NYU40 ids,
``instance/`` and ``intrinsics_depth.txt``. NYU40 ids then map to the 20 benchmark classes (``scannet20``, 0 =
ignored). Splits are the official scene lists ``scannetv2_<split>.txt`` in ROOT (or its parent).
"""
from __future__ import annotations

import csv
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..classes import SCANNET20_NYU40_IDS
from ..registry import DatasetFormat
from .common import (UNKNOWN_INTRINSICS, Reader, read_ids, read_matrix_intrinsics, read_rgb, read_uint16,
                     resize_to, sample_from, sorted_files)

TSV_NAME = "scannetv2-labels.combined.tsv"
COLOR_COMPRESSION = {0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {0: "raw", 1: "zlib", 2: "occi"}
_HEADER_MATRICES = struct.Struct("<64f")
_HEADER_TAIL = struct.Struct("<iiIIIIfQ")
_FRAME_HEAD = struct.Struct("<16fQQQQ")
NYU40_TO_SCANNET20 = np.zeros(41, np.int64)
NYU40_TO_SCANNET20[list(SCANNET20_NYU40_IDS)] = np.arange(1, len(SCANNET20_NYU40_IDS) + 1)


class SensFile:
    """Header and frame offsets of one ``.sens`` file; frames are read on demand.

    Args:
        path: the ``.sens`` file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            try:
                version, = struct.unpack("<I", f.read(4))
                if version != 4:
                    raise ValueError(f"version {version}, expected 4")
                name_len, = struct.unpack("<Q", f.read(8))
                self.sensor = f.read(name_len).decode("utf-8", "replace")
                m = np.asarray(_HEADER_MATRICES.unpack(f.read(_HEADER_MATRICES.size)), np.float32).reshape(4, 4, 4)
                self.color_intrinsics, _, self.depth_intrinsics, _ = m
                (color_comp, depth_comp, self.color_width, self.color_height, self.depth_width, self.depth_height,
                 self.depth_shift, count) = _HEADER_TAIL.unpack(f.read(_HEADER_TAIL.size))
                self.color_compression = COLOR_COMPRESSION.get(color_comp, f"unknown ({color_comp})")
                self.depth_compression = DEPTH_COMPRESSION.get(depth_comp, f"unknown ({depth_comp})")
                self.offsets = []  # byte offset of each frame's header
                for _ in range(count):
                    self.offsets.append(f.tell())
                    head = f.read(_FRAME_HEAD.size)
                    color_bytes, depth_bytes = _FRAME_HEAD.unpack(head)[-2:]
                    f.seek(color_bytes + depth_bytes, io.SEEK_CUR)
                if f.tell() > self.path.stat().st_size:
                    raise ValueError(f"frame {count - 1} ends past the end of the file")
            except (struct.error, ValueError) as e:
                raise ValueError(f"{self.path}: not a readable ScanNet .sens file ({e}); truncated download?") \
                    from None
        if color_comp not in COLOR_COMPRESSION or self.depth_compression not in ("raw", "zlib"):
            raise ValueError(f"{self.path}: unsupported compression (colour {self.color_compression}, depth "
                             f"{self.depth_compression}); supported: colour raw/png/jpeg, depth raw/zlib")

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``index`` -> (rgb uint8 (h, w, 3) at its own resolution, depth uint16 (H, W), pose (4, 4))."""
        with open(self.path, "rb") as f:
            f.seek(self.offsets[index])
            head = _FRAME_HEAD.unpack(f.read(_FRAME_HEAD.size))
            color_bytes, depth_bytes = head[-2:]
            color, depth = f.read(color_bytes), f.read(depth_bytes)
        where = f"{self.path} frame {index}"
        if len(color) != color_bytes or len(depth) != depth_bytes:
            raise ValueError(f"{where}: truncated")
        if self.color_compression == "raw":
            rgb = np.frombuffer(color, np.uint8).reshape(self.color_height, self.color_width, 3)
        else:
            try:
                with Image.open(io.BytesIO(color)) as im:
                    rgb = np.asarray(im.convert("RGB"))
            except Exception as e:  # PIL raises several types for corrupt streams
                raise ValueError(f"{where}: undecodable {self.color_compression} colour ({e})") from None
        try:
            raw = zlib.decompress(depth) if self.depth_compression == "zlib" else depth
        except zlib.error as e:
            raise ValueError(f"{where}: corrupt zlib depth ({e})") from None
        if len(raw) != 2 * self.depth_width * self.depth_height:
            raise ValueError(f"{where}: depth holds {len(raw)} bytes, expected "
                             f"{self.depth_width}x{self.depth_height} uint16")
        depth_map = np.frombuffer(raw, "<u2").reshape(self.depth_height, self.depth_width)
        return rgb, depth_map, np.asarray(head[:16], np.float32).reshape(4, 4)


def open_scannet(root: str | Path, **kwargs) -> Reader:
    """:class:`ScanNetSens` for a ``.sens`` file or a folder of scans holding them, else :class:`ScanNetFrames`."""
    root = Path(root)
    return ScanNetSens(root, **kwargs) if _has_sens(root) else ScanNetFrames(root, **kwargs)


def _has_sens(root: Path) -> bool:
    return root.suffix == ".sens" or (root.is_dir() and (any(root.glob("*.sens")) or any(root.glob("*/*.sens"))))


def _find(root: Path, name: str) -> Path | None:
    return next((p for p in (root / name, root.parent / name) if p.is_file()), None)


def read_split(root: Path, split: str | None) -> set[str] | None:
    """Scene names of the official ``scannetv2_<split>.txt`` (None = every scene)."""
    if split is None:
        return None
    path = _find(root, f"scannetv2_{split}.txt")
    if path is None:
        raise FileNotFoundError(f"{root / f'scannetv2_{split}.txt'}: scene list of split {split!r} not found (also "
                                f"looked in {root.parent}); add it from the ScanNet repository or use split 'all'")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def read_label_tsv(path: Path) -> np.ndarray:
    """``scannetv2-labels.combined.tsv`` -> int64 lookup table raw category id -> NYU40 id (unknown ids -> 0)."""
    try:
        with open(path, newline="") as f:
            rows = [(int(r["id"]), int(r["nyu40id"] or 0)) for r in csv.DictReader(f, delimiter="\t")]
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"{path}: expected tab-separated columns 'id' and 'nyu40id' ({e})") from None
    lut = np.zeros(max((i for i, _ in rows), default=0) + 1, np.int64)
    for raw, nyu40 in rows:
        if not 0 <= nyu40 <= 40:
            raise ValueError(f"{path}: category {raw} has nyu40id {nyu40} outside 0..40")
        lut[raw] = nyu40
    return lut


class ScanNetSens(Reader):
    """Every ``frame_skip``-th frame of ScanNet ``.sens`` files (pre-training: no labels).

    Args:
        root: a ``.sens`` file, or a folder holding ``<scene>.sens`` or ``<scene>/<scene>.sens``.
        split: official split (``scannetv2_<split>.txt`` next to the scans), None for every scan.
        frame_skip: keep frames 0, frame_skip, 2 * frame_skip, ... of each scan.
        depth_scale: depth units per metre (default: the file's depth shift, 1000).
        require_labels: must be False (``.sens`` streams carry no labels).
    """

    class_set = "scannet20"

    def __init__(self, root: str | Path, *, split: str | None = "train", frame_skip: int = 25,
                 depth_scale: float | None = None, require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        if require_labels:
            raise ValueError(f"{self.root}: .sens streams have no labels; use the exported frames with label-filt/")
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        self.depth_scale = depth_scale
        if self.root.is_file():
            paths = [self.root]
        else:
            wanted = read_split(self.root, split)
            paths = sorted(set(self.root.glob("*.sens")) | set(self.root.glob("*/*.sens")))
            paths = [p for p in paths if wanted is None or p.stem in wanted]
        self.files = [SensFile(p) for p in paths]
        self.frames = [(f, i) for f in self.files for i in range(0, len(f), frame_skip)]
        self._require_frames(f"split {split!r}, frame_skip {frame_skip}")

    def labelled(self, index: int) -> bool:
        return False  # .sens streams carry no labels

    def frame_id(self, frame: tuple[SensFile, int]) -> str:
        return f"{frame[0].path.stem}_{frame[1]:06d}"

    def load(self, frame: tuple[SensFile, int]) -> dict:
        sens, index = frame
        rgb, depth, _ = sens.read(index)
        h, w = depth.shape
        rgb = resize_to(rgb, h, w, nearest=False, path=sens.path)
        k = sens.depth_intrinsics
        metres = depth.astype(np.float32) / (self.depth_scale or sens.depth_shift)
        return sample_from(rgb, metres, (k[0, 0], k[1, 1], k[0, 2], k[1, 2]), self.frame_id(frame),
                           paths=[sens.path])


class ScanNetFrames(Reader):
    """Exported ScanNet frame folders or ``scannet_frames_25k`` (module docstring), at the depth resolution.

    Args:
        root: the folder holding the scene folders.
        split: official split (``scannetv2_<split>.txt``), None for every scene.
        frame_skip: keep frames whose number is a multiple of this (frames_25k holds every 100th already).
        depth_scale: depth units per metre (default 1000).
        require_labels: raise for a frame without a label map instead of omitting the key.
    """

    class_set = "scannet20"

    def __init__(self, root: str | Path, *, split: str | None = "train", frame_skip: int = 25,
                 depth_scale: float | None = None, require_labels: bool = False):
        super().__init__(root, require_labels=require_labels)
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        self.depth_scale = depth_scale or 1000.0
        self._raw_to_nyu40 = None
        wanted = read_split(self.root, split)
        scenes = [d for d in sorted(self.root.iterdir()) if (d / "color").is_dir() and (d / "depth").is_dir()]
        for scene in scenes:
            if wanted is not None and scene.name not in wanted:
                continue
            for rgb in sorted_files(scene / "color", (".jpg", ".jpeg", ".png")):
                if not rgb.stem.isdigit():
                    self.problems.append(f"{rgb}: frame file names must be frame numbers")
                elif int(rgb.stem) % frame_skip == 0:
                    if (scene / "depth" / f"{rgb.stem}.png").is_file():
                        self.frames.append(rgb)
                    else:
                        self.problems.append(f"{rgb}: no matching depth/{rgb.stem}.png")
        self._require_frames(f"split {split!r}; expected <scene>/color/<n>.jpg with <scene>/depth/<n>.png")

    @property
    def raw_to_nyu40(self) -> np.ndarray:
        if self._raw_to_nyu40 is None:
            path = _find(self.root, TSV_NAME)
            if path is None:
                raise FileNotFoundError(f"{self.root / TSV_NAME}: needed to map label-filt/ raw category ids to "
                                        f"NYU40 (also looked in {self.root.parent})")
            self._raw_to_nyu40 = read_label_tsv(path)
        return self._raw_to_nyu40

    def _intrinsics(self, scene: Path):
        for path in (scene / "intrinsic" / "intrinsic_depth.txt", scene / "intrinsics_depth.txt"):
            if path.is_file():
                return read_matrix_intrinsics(path)
        return UNKNOWN_INTRINSICS

    def frame_id(self, rgb_path: Path) -> str:
        return f"{rgb_path.parent.parent.name}_{rgb_path.stem}"

    @staticmethod
    def _label_files(rgb_path: Path) -> tuple[Path, Path]:
        """The frame's ``label-filt`` map (raw ids) and ``label`` map (NYU40 ids, frames_25k): either labels it."""
        scene, stem = rgb_path.parent.parent, rgb_path.stem
        return scene / "label-filt" / f"{stem}.png", scene / "label" / f"{stem}.png"

    def labelled(self, index: int) -> bool:
        return any(p.is_file() for p in self._label_files(self.frames[index]))

    def load(self, rgb_path: Path) -> dict:
        scene, stem = rgb_path.parent.parent, rgb_path.stem
        depth_path = scene / "depth" / f"{stem}.png"
        depth = read_uint16(depth_path)
        h, w = depth.shape
        rgb = resize_to(read_rgb(rgb_path), h, w, nearest=False, path=rgb_path)
        extra = {}
        filtered, exported = self._label_files(rgb_path)
        if filtered.is_file():
            raw = read_ids(filtered, "label")
            lut = self.raw_to_nyu40
            nyu40 = lut[np.minimum(raw, len(lut) - 1)] * (raw < len(lut))
            extra["label"] = resize_to(NYU40_TO_SCANNET20[nyu40], h, w, nearest=True, path=filtered)
        elif exported.is_file():
            nyu40 = read_ids(exported, "label")
            if nyu40.max() > 40:
                raise ValueError(f"{exported}: label id {nyu40.max()} is not an NYU40 id (0..40)")
            extra["label"] = resize_to(NYU40_TO_SCANNET20[nyu40], h, w, nearest=True, path=exported)
        else:
            self._missing_label(filtered, f"{scene.name}/{stem}")
        for inst in (scene / "instance-filt" / f"{stem}.png", scene / "instance" / f"{stem}.png"):
            if inst.is_file():
                extra["instance"] = resize_to(read_ids(inst, "instance"), h, w, nearest=True, path=inst)
                break
        return sample_from(rgb, depth.astype(np.float32) / self.depth_scale, self._intrinsics(scene),
                           self.frame_id(rgb_path), paths=[rgb_path, depth_path], **extra)


@dataclass
class ScanNetOptions:
    """Options of a scannet data source."""
    frame_skip: int = 25  # keep every frame_skip-th frame of each scan (Pri3D / Mask3D use 25)


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() == ".sens"
    return path.is_dir() and (_has_sens(path) or any(
        (d / "color").is_dir() and (d / "depth").is_dir() for d in path.iterdir() if d.is_dir()))


DATASET_FORMAT = DatasetFormat(
    "scannet", open=lambda src, *, root, split, depth_scale, require_labels, **_: open_scannet(
        root, split=split, frame_skip=src.options.frame_skip, depth_scale=depth_scale, require_labels=require_labels),
    options=ScanNetOptions, class_set=ScanNetFrames.class_set, default_splits=("train", "val"), scaled_depth=True,
    detect=_detect)
