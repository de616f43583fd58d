"""The frames-folder layout: the library's own on-disk format for RGB-D frames.

``mask3d-vit synth`` writes it, ``mask3d-vit data convert`` turns other datasets into it, and it is the documented
way to bring custom data::

    DIR/
      meta.json          {"format": "mask3d-frames", "version": 1, "depth_scale": 1000.0,
                          "class_set": "nyu13", "classes": ["unlabeled", "bed", ...],
                          "intrinsics": [fx, fy, cx, cy],                # default for every frame
                          "frame_intrinsics": {"<id>": [fx, fy, cx, cy]}, # optional per-frame overrides
                          "splits": ["train", "val"], "source": "...",
                          "depth_range": [0.1, 20.0]}  # optional: plausible median depth (m), default indoor
      rgb/<id>.png       uint8 RGB (.jpg also read)
      depth/<id>.png     uint16, metres = value / depth_scale; 0 = no depth
      label/<id>.png     optional, class ids of ``class_set`` (0 = unlabeled)
      instance/<id>.png  optional, uint16 instance ids (0 = none)
      train.txt, val.txt one frame id per line

Frame ids are file stems: letters, digits, ``_``, ``-`` and ``.``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..io import write_json, write_png, write_text
from .registry import DatasetFormat
from .sample import make_sample

FORMAT = "mask3d-frames"
VERSION = 1
_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
# Plausible median depth of indoor RGB-D frames (metres); outside it the depth scale is probably wrong.
INDOOR_DEPTH_RANGE = (0.1, 20.0)


class FramesWriter:
    """Writes frames into the layout above, one atomic file at a time, so an interrupted conversion resumes.

    Args:
        root: output folder (created).
        classes: class names, index = label id, index 0 = "unlabeled"; empty when there are no labels.
        class_set: name of the class set (e.g. ``"nyu13"``).
        depth_scale: stored uint16 value per metre (1000 = millimetres).
        source: free text describing where the frames came from.
        depth_range: plausible (low, high) median depth in metres when not indoor (e.g. street scenes).
    """

    def __init__(self, root: str | Path, *, classes: list[str] = (), class_set: str | None = None,
                 depth_scale: float = 1000.0, source: str = "", depth_range: tuple[float, float] | None = None):
        self.root = Path(root)
        self.classes = list(classes)
        self.class_set = class_set
        self.depth_scale = float(depth_scale)
        self.source = source
        self.depth_range = depth_range
        self.intrinsics: dict[str, list[float]] = {}
        meta = self.root / "meta.json"
        if meta.is_file():  # resuming: keep what earlier runs recorded
            self.intrinsics = dict(json.loads(meta.read_text()).get("frame_intrinsics", {}))

    def path(self, kind: str, frame_id: str) -> Path:
        return self.root / kind / f"{frame_id}.png"

    def exists(self, frame_id: str) -> bool:
        """True when the frame's RGB and depth are already on disk (used to resume conversions)."""
        return self.path("rgb", frame_id).is_file() and self.path("depth", frame_id).is_file()

    def write(self, frame_id: str, rgb: np.ndarray, depth: np.ndarray, *, intrinsics=None,
              label: np.ndarray | None = None, instance: np.ndarray | None = None) -> None:
        """Write one frame. ``rgb`` uint8 (H, W, 3); ``depth`` float metres (H, W), invalid = 0/NaN/inf."""
        if not _ID.match(frame_id):
            raise ValueError(f"frame id {frame_id!r} may only hold letters, digits, '_', '-' and '.'")
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"{frame_id}: rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"{frame_id}: depth {depth.shape} and rgb {rgb.shape[:2]} differ in size")
        write_png(self.path("depth", frame_id), encode_depth(depth, self.depth_scale))
        if label is not None:
            if label.max(initial=0) > 255 or label.min(initial=0) < 0:
                raise ValueError(f"{frame_id}: label ids must lie in 0..255")
            write_png(self.path("label", frame_id), label.astype(np.uint8))
        if instance is not None:
            write_png(self.path("instance", frame_id), instance.astype(np.uint16))
        if intrinsics is not None:
            self.intrinsics[frame_id] = [float(v) for v in intrinsics]
        # RGB last: exists() then means every file of the frame is complete.
        write_png(self.path("rgb", frame_id), rgb)

    def finish(self, splits: dict[str, list[str]]) -> Path:
        """Write split lists and meta.json; returns the meta.json path."""
        for name, ids in splits.items():
            write_text(self.root / f"{name}.txt", "".join(f"{i}\n" for i in ids))
        values = list(self.intrinsics.values())
        common = values[0] if values and all(v == values[0] for v in values) else None
        meta = {"format": FORMAT, "version": VERSION, "depth_scale": self.depth_scale, "class_set": self.class_set,
                "classes": self.classes, "intrinsics": common, "splits": sorted(splits), "source": self.source}
        if common is None and values:
            meta["frame_intrinsics"] = self.intrinsics
        if self.depth_range is not None:
            meta["depth_range"] = [float(v) for v in self.depth_range]
        write_json(self.root / "meta.json", meta)
        return self.root / "meta.json"


def encode_depth(depth: np.ndarray, depth_scale: float) -> np.ndarray:
    """float metres -> uint16 at ``depth_scale`` units per metre; invalid or out-of-range depth becomes 0."""
    d = np.asarray(depth, dtype=np.float64) * depth_scale
    ok = np.isfinite(d) & (d > 0) & (d < 65535.5)
    return np.where(ok, np.rint(np.where(ok, d, 0)), 0).astype(np.uint16)


def read_meta(root: str | Path) -> dict:
    meta_path = Path(root) / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; a frames folder needs meta.json (see mask3d_vit.data.frames)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path}: not valid JSON: {e}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if not (isinstance(meta.get("depth_scale"), (int, float)) and meta["depth_scale"] > 0):
        raise ValueError(f"{meta_path}: depth_scale must be a positive number, got {meta.get('depth_scale')!r}")
    return meta


def split_names(root: str | Path) -> tuple[str, ...]:
    """The split lists of a frames folder: the ``<name>.txt`` files beside ``meta.json``."""
    return tuple(sorted(p.stem for p in Path(root).glob("*.txt")))


def read_split(root: str | Path, split: str | None) -> list[str]:
    """Frame ids of ``split`` (its ``<split>.txt``), or every frame in ``rgb/`` when ``split`` is None."""
    root = Path(root)
    if split is None:
        return sorted(p.stem for p in (root / "rgb").iterdir() if p.suffix.lower() in RGB_SUFFIXES)
    path = root / f"{split}.txt"
    if not path.is_file():
        have = ", ".join(split_names(root)) or "none"
        raise FileNotFoundError(f"{path}: split {split!r} not found (splits here: {have})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def missing_label(path: Path, frame_id: str) -> FileNotFoundError:
    """The error of a frame without the label map that fine-tuning needs, with the way out for partly labelled data."""
    return FileNotFoundError(f"{path}: missing label map for frame {frame_id!r} (labels are required here; to "
                             f"fine-tune on the labelled frames only, `mask3d-vit data convert ... --labelled-only`)")


def find_rgb(root: Path, frame_id: str) -> Path:
    for suffix in RGB_SUFFIXES:
        p = root / "rgb" / f"{frame_id}{suffix}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"{root / 'rgb' / frame_id}.png: missing RGB image for frame {frame_id!r}")


def read_image(path: Path, mode: str | None = None) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if mode is not None and im.mode != mode:
                im = im.convert(mode)
            return np.asarray(im)
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises many types for truncated or foreign files
        raise ValueError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def decode_jpeg(data, where) -> np.ndarray:
    """JPEG bytes -> uint8 (H, W, 3) RGB with libjpeg-turbo through simplejpeg (0.7 ms against PIL's 1.1 ms for a
    360x480 frame); every JPEG the library reads goes through here, so a frames folder and a packed store holding
    the same bytes decode to the same pixels. Errors name ``where`` (the file holding the bytes)."""
    import simplejpeg
    try:
        return simplejpeg.decode_jpeg(bytes(data), colorspace="RGB")
    except Exception as e:  # simplejpeg raises ValueError and others for damaged data
        raise ValueError(f"{where}: unreadable JPEG ({type(e).__name__}: {e})") from None


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) from a colour image file (JPEG through :func:`decode_jpeg`); the error names the file."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        return decode_jpeg(path.read_bytes(), path)
    return read_image(path, "RGB")


class FramesDataset(torch.utils.data.Dataset):
    """A frames folder as a map-style dataset of sample dicts (see :mod:`mask3d_vit.data.sample`).

    Args:
        root: the frames folder.
        split: split list to read (``"train"``, ``"val"``...), or None for every frame.
        max_depth: depth at or beyond this range (metres) is invalid.
        require_labels: raise for a frame without ``label/<id>.png`` (fine-tuning) instead of omitting the key.
        depth_scale: override meta.json's depth scale (stored units per metre).
        transform: callable applied to each sample dict.
    """

    def __init__(self, root: str | Path, split: str | None = "train", *, max_depth: float | None = None,
                 require_labels: bool = False, depth_scale: float | None = None, transform=None):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.ids = read_split(self.root, split)
        if not self.ids:
            raise ValueError(f"{self.root}: split {split!r} lists no frames")
        self.depth_scale = float(depth_scale or self.meta["depth_scale"])
        self.max_depth = max_depth
        self.require_labels = require_labels
        self.transform = transform
        self.classes = self.meta.get("classes") or []
        self.class_set = self.meta.get("class_set")
        self.depth_range = tuple(self.meta.get("depth_range") or INDOOR_DEPTH_RANGE)

    @property
    def problems(self) -> list[str]:
        """Files of the folder without their RGB partner (a depth, label or instance map of no frame), and split
        list entries naming a frame without its RGB image or depth map."""
        stems = {p.stem for p in (self.root / "rgb").iterdir()} if (self.root / "rgb").is_dir() else set()
        found = [f"{p}: no matching rgb/{p.stem}.* (orphan file)"
                 for kind in ("depth", "label", "instance") if (self.root / kind).is_dir()
                 for p in sorted((self.root / kind).iterdir()) if p.suffix == ".png" and p.stem not in stems]
        for split in split_names(self.root):
            for fid in read_split(self.root, split):
                missing = [f"{kind}/{fid}.png" for kind, present in (
                    ("rgb", fid in stems), ("depth", (self.root / "depth" / f"{fid}.png").is_file())) if not present]
                if missing:
                    found.append(f"{self.root / split}.txt: lists frame {fid!r}, which has no {' or '.join(missing)}")
        return found

    def __len__(self) -> int:
        return len(self.ids)

    def labelled(self, index: int) -> bool:
        """Whether frame ``index`` has a label map (read from the file listing, not decoded)."""
        return (self.root / "label" / f"{self.ids[index]}.png").is_file()

    def intrinsics(self, frame_id: str):
        k = self.meta.get("frame_intrinsics", {}).get(frame_id) or self.meta.get("intrinsics")
        if k is None:
            raise ValueError(f"{self.root / 'meta.json'}: no intrinsics for frame {frame_id!r}")
        return k

    def __getitem__(self, index: int) -> dict:
        fid = self.ids[index]
        rgb = read_rgb(find_rgb(self.root, fid))
        depth_path = self.root / "depth" / f"{fid}.png"
        if not depth_path.is_file():
            raise FileNotFoundError(f"{depth_path}: missing depth map for frame {fid!r}")
        raw = read_image(depth_path)
        if raw.dtype != np.uint16 and raw.dtype != np.int32:
            raise ValueError(f"{depth_path}: depth must be a 16-bit PNG, got {raw.dtype}")
        optional = {}
        for key in ("label", "instance"):
            p = self.root / key / f"{fid}.png"
            if p.is_file():
                optional[key] = read_image(p)
            elif key == "label" and self.require_labels:
                raise missing_label(p, fid)
        depth = raw.astype(np.float32) / self.depth_scale
        try:
            sample = make_sample(rgb, depth, self.intrinsics(fid), fid, max_depth=self.max_depth, **optional)
        except ValueError as e:  # size mismatches: say which folder the frame lives in
            raise ValueError(f"{self.root}: {e}") from None
        return self.transform(sample) if self.transform else sample


DATASET_FORMAT = DatasetFormat(
    "frames", open=lambda src, *, root, split, depth_scale, require_labels, **_: FramesDataset(
        root, split, require_labels=require_labels, depth_scale=depth_scale),
    class_set=lambda src: read_meta(Path(src.root).expanduser()).get("class_set"),
    default_splits=lambda root: split_names(root) or ("all",), scaled_depth=True,
    detect=lambda path: (path / "meta.json").is_file())
