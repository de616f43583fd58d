"""The packed store: frames pre-resized once and written into litdata shards, read back by index.

A frames folder decodes a full-resolution PNG pair per sample (~55 samples/s per core at 480x640, issue 24); the
packed store keeps every frame at the size training reads (by default 392x523, so the random resized crops of the
pre-training recipe at 240x320 are never upsampled, docs/datasets.md "Packed store"), colour as JPEG and depth as
zstd-compressed uint16, in shards of `litdata <https://github.com/Lightning-AI/litData>`_::

    mask3d-vit data pack scannet /data/scannet/scans --out /data/scannet_packed --frame-skip 25
    mask3d-vit data check /data/scannet_packed
    # recipe: data.sources=[{format: packed, root: /data/scannet_packed}]

    DIR/
      index.json, chunk-*.bin   litdata's shards: one item per frame (id, JPEG colour, zstd depth, label, instance,
                                intrinsics, stored H and W)
      packed.json               {"format": "mask3d-packed", "version": 1, "size": [H, W], "depth_scale": 1000.0,
                                 "frames": N, "splits": {"train": [indices], ...}, "class_set", "classes", ...}

Reading is by index (``store[i]``), never litdata's own iteration: :class:`~mask3d_vit.engine.data.ResumableSampler`
and :class:`~mask3d_vit.engine.data.SeededDataset` stay the one source of order and augmentation randomness, so exact
resume and rank sharding are the same as for any other source. ``pack`` writes into ``DIR.partial`` and renames it
to ``DIR`` when complete, so a half-written pack is never taken for a store. Only local and shared (NFS, Lustre...)
folders are supported.
"""
from __future__ import annotations

import json
import os
import shutil
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path

import numpy as np
import torch

from ..extras import optional_import
from ..io import write_json
from .build import SourceConfig
from .classes import get_class_set
from .convert import open_splits, read_frame
from .frames import INDOOR_DEPTH_RANGE, decode_jpeg, encode_depth
from .registry import DatasetFormat, get_format
from .sample import DEPTH, INSTANCE, INTRINSICS, LABEL, RGB, VALID, make_sample
from .transforms import crop_cover_size, shrink_to_cover

FORMAT = "mask3d-packed"
VERSION = 1
META = "packed.json"
# The random resized crops of pre-training at the paper's 240x320 (area 0.5-1, aspect 3/4-4/3) are never upsampled
# from frames of this size (docs/datasets.md, "Packed store").
DEFAULT_SIZE = crop_cover_size((240, 320))
_ZSTD_LEVEL = 9         # depth maps: compressed once, decompressed ~0.4 ms at 360x480 (a 16-bit PNG: ~2.4 ms)
_CHUNK_BYTES = "64MB"   # ~230 frames a shard at 392x523: few files; a read by index fetches one frame


def _modules():
    purpose = "The packed frame store"
    return (optional_import("litdata", purpose, "packed"), optional_import("zstandard", purpose, "packed"))


def _encode_map(array: np.ndarray) -> bytes:
    return _modules()[1].ZstdCompressor(level=_ZSTD_LEVEL).compress(np.ascontiguousarray(array).tobytes())


def _decode_map(data, dtype, shape: tuple[int, int]) -> np.ndarray:
    return np.frombuffer(_modules()[1].ZstdDecompressor().decompress(bytes(data)), dtype).reshape(shape)


def encode_frame(sample: dict, size: tuple[int, int], depth_scale: float, quality: int) -> dict:
    """One raw sample -> the item stored for it: shrunk to cover ``size`` (never upsampled), colour as JPEG,
    depth as zstd uint16 at ``depth_scale`` units per metre, id maps as zstd (empty bytes when absent)."""
    import simplejpeg
    sample = shrink_to_cover(sample, size)
    rgb = sample[RGB].permute(1, 2, 0).contiguous().numpy()
    depth = encode_depth(torch.where(sample[VALID], sample[DEPTH], 0)[0].numpy(), depth_scale)
    label, instance = sample.get(LABEL), sample.get(INSTANCE)
    if label is not None and (int(label.max()) > 255 or int(label.min()) < 0):
        raise ValueError(f"{sample['frame_id']}: label ids must lie in 0..255")
    return {"id": sample["frame_id"], "h": rgb.shape[0], "w": rgb.shape[1],
            "rgb": simplejpeg.encode_jpeg(rgb, quality=quality, colorspace="RGB"),
            "depth": _encode_map(depth),
            "label": b"" if label is None else _encode_map(label.numpy().astype(np.uint8)),
            "instance": b"" if instance is None else _encode_map(instance.numpy().astype(np.uint16)),
            "intrinsics": sample[INTRINSICS].numpy().astype(np.float32)}


def pack(src: SourceConfig, out: str | Path, *, size: tuple[int, int] = DEFAULT_SIZE,
         splits: tuple[str, ...] | None = None, labelled_only: bool = False, skip_bad: bool = False,
         quality: int = 95, progress: bool = False) -> Path:
    """Write the frames of ``src`` (any registered format) as a packed store at ``out``; returns its ``packed.json``.

    A frame listed by several splits is stored once; ``packed.json`` records each split as a list of indices.

    Args:
        src: the source (format, root and options).
        out: the store folder; must not exist yet (or be empty). Written as ``out.partial`` and renamed when done.
        size: (H, W) every frame is shrunk to cover, keeping its aspect ratio; smaller frames stay as they are.
        splits: splits to pack (default: those of the format's that the source has frames of, a frames folder's
            own split lists); ``"all"`` = every frame.
        labelled_only: pack only the frames that have a label map.
        skip_bad: log and skip frames that fail to load instead of stopping.
        quality: JPEG quality of the colour images.
        progress: show a progress bar.

    Raises:
        FileExistsError: ``out`` already holds files.
    """
    litdata, _ = _modules()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; pack into a new folder")
    fmt = get_format(src.format)
    if fmt.generator:
        raise ValueError(f"format {fmt.name} renders its frames; write them with `mask3d-vit synth` and pack that")
    size = tuple(int(s) for s in size)
    readers, frames = open_splits(src, splits, labelled_only=labelled_only)
    first = next(iter(readers.values()))
    class_set = getattr(first, "class_set", None)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier pack that was interrupted
    writer = litdata.streaming.writer.BinaryWriter(str(partial), chunk_bytes=_CHUNK_BYTES)
    index: dict[str, int] = {}
    labelled: list[int] = []  # stored items with a label map: `data check` counts them without decoding
    members: dict[str, list[int]] = {name: [] for name in readers if name != "all"}
    for name, reader in readers.items():
        indices = frames[name]
        if progress:
            from tqdm import tqdm
            indices = tqdm(indices, desc=f"pack {name}", unit="frame")
        for i in indices:
            sample = read_frame(reader, i, name, skip_bad)
            if sample is None:
                continue
            fid = sample["frame_id"]
            if fid not in index:
                index[fid] = len(index)
                writer.add_item(index[fid], encode_frame(sample, size, fmt.depth_scale, quality))
                if sample.get(LABEL) is not None:
                    labelled.append(index[fid])
            if name != "all":
                members[name].append(index[fid])
    if not index:
        raise ValueError(f"{src.root}: no frame could be read; nothing packed")
    writer.done()
    writer.merge()
    write_json(partial / META, {
        "format": FORMAT, "version": VERSION, "size": list(size), "depth_scale": fmt.depth_scale,
        "frames": len(index), "splits": members, "labelled": labelled, "class_set": class_set,
        "classes": list(get_class_set(class_set).names) if class_set else [],
        "depth_range": list(getattr(first, "depth_range", INDOOR_DEPTH_RANGE)),
        "source": f"mask3d-vit data pack {src.format} {src.root}"})
    if out.exists():
        out.rmdir()
    os.replace(partial, out)
    return out / META


def read_packed_meta(root: str | Path) -> dict:
    """``packed.json`` of the store at ``root``, checked; the error names the file."""
    path = Path(root) / META
    if not path.is_file():
        partial = " (a pack was interrupted: pack again)" if Path(f"{root}.partial").exists() else ""
        raise FileNotFoundError(f"{path}: missing; not a packed store{partial} (write one with mask3d-vit data pack)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, expected "
                         f"{FORMAT!r} version {VERSION}")
    return meta


class PackedDataset(torch.utils.data.Dataset):
    """A packed store as a map-style dataset of sample dicts at the stored size.

    Opening checks every shard against litdata's ``index.json`` (present, of the recorded size), so a truncated or
    missing shard is named before training starts instead of stalling a worker.

    Args:
        root: the store folder.
        split: a split recorded in ``packed.json``, or None for every frame.
        require_labels: raise for a frame without a label map instead of omitting the key.
    """

    def __init__(self, root: str | Path, split: str | None = None, *, require_labels: bool = False):
        self.root = Path(root)
        self.meta = read_packed_meta(self.root)
        if split is None:
            self.indices = list(range(self.meta["frames"]))
        elif split in self.meta["splits"]:
            self.indices = list(self.meta["splits"][split])
        else:
            have = ", ".join(sorted(self.meta["splits"])) or "none (pack with --splits)"
            raise FileNotFoundError(f"{self.root / META}: split {split!r} not packed (splits here: {have})")
        self.require_labels = require_labels
        self._labelled = set(self.meta["labelled"])
        self.class_set = self.meta.get("class_set")
        self.classes = self.meta.get("classes") or []
        self.depth_range = tuple(self.meta.get("depth_range") or INDOOR_DEPTH_RANGE)
        self.depth_scale = float(self.meta["depth_scale"])
        chunks = json.loads((self.root / "index.json").read_text())["chunks"]
        self.chunk_names = [c["filename"] for c in chunks]
        self.chunk_ends = list(accumulate(c["chunk_size"] for c in chunks))
        for c in chunks:
            path = self.root / c["filename"]
            have = path.stat().st_size if path.is_file() else None
            if have != c["chunk_bytes"]:
                raise ValueError(f"{path}: corrupt shard ({'missing' if have is None else f'{have} bytes'}, "
                                 f"index.json records {c['chunk_bytes']}); pack the store again")
        self._store = None  # opened in the process that reads (each DataLoader worker its own)

    def __len__(self) -> int:
        return len(self.indices)

    def labelled(self, index: int) -> bool:
        """Whether frame ``index`` has a label map (recorded in ``packed.json``, nothing decoded)."""
        return self.indices[index] in self._labelled

    def shard_of(self, index: int) -> Path:
        """The shard file holding stored item ``index``."""
        return self.root / self.chunk_names[bisect_right(self.chunk_ends, index)]

    def __getitem__(self, index: int) -> dict:
        item = self.indices[index]
        try:
            if self._store is None:
                self._store = _modules()[0].StreamingDataset(str(self.root))
            raw = self._store[item]
            h, w = int(raw["h"]), int(raw["w"])
            rgb = decode_jpeg(raw["rgb"], self.shard_of(item))
            depth = _decode_map(raw["depth"], np.uint16, (h, w))
            maps = {key: _decode_map(raw[key], dtype, (h, w))
                    for key, dtype in ((LABEL, np.uint8), (INSTANCE, np.uint16)) if len(raw[key])}
            fid = str(raw["id"])
        except Exception as e:  # litdata, JPEG and zstd raise many types for damaged bytes
            raise ValueError(f"{self.shard_of(item)}: corrupt shard, item {item} unreadable "
                             f"({type(e).__name__}: {e}); pack the store again") from None
        if LABEL not in maps and self.require_labels:
            raise FileNotFoundError(f"{self.shard_of(item)}: frame {fid!r} has no label map (labels are required "
                                    f"here)")
        return make_sample(rgb, depth.astype(np.float32) / self.depth_scale, raw["intrinsics"], fid, **maps)


def run_pack(args) -> int:
    """CLI entry: pack, then print where the store went."""
    from .check import source_from_args
    src = source_from_args(args)
    parts = args.size.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--size {args.size}: expected HxW in pixels, e.g. 360x480")
    size = (int(parts[0]), int(parts[1]))
    splits = tuple(s for s in args.splits.split(",") if s) if args.splits else None
    meta = pack(src, args.out, size=size, splits=splits, labelled_only=args.labelled_only, skip_bad=args.skip_bad,
                quality=args.quality, progress=not args.quiet)
    print(f"wrote {meta.parent} (check it with: mask3d-vit data check {meta.parent})")
    return 0


DATASET_FORMAT = DatasetFormat(
    "packed", open=lambda src, *, root, split, require_labels, **_: PackedDataset(
        root, split, require_labels=require_labels),
    class_set=lambda src: read_packed_meta(Path(src.root).expanduser()).get("class_set"),
    default_splits=lambda root: tuple(read_packed_meta(root)["splits"]) or ("all",),
    detect=lambda path: (path / META).is_file())
