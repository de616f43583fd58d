"""``mask3d-vit data convert``: any supported format -> the frames-folder layout, once.

Decoding a 480x640 PNG pair costs milliseconds; a ``.mat`` frame, a ``.sens`` frame or a Cityscapes disparity map
more. Converting once gives a folder that loads fast and is checked like any other. Every file is written
atomically and ``meta.json`` (with the split lists so far) is refreshed every ``checkpoint_every`` frames, so an
interrupted conversion resumes where it stopped: frames already on disk are skipped. ``labelled_only`` writes only
the frames with a label map (told from the files, nothing decoded), so a partly labelled source becomes a folder that
fine-tuning reads whole.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .build import SourceConfig, open_source
from .classes import get_class_set
from ..config import ConfigError
from .formats.common import NoFramesError, Reader
from .frames import INDOOR_DEPTH_RANGE, FramesWriter
from .registry import get_format
from .sample import DEPTH, INSTANCE, INTRINSICS, LABEL, RGB

logger = logging.getLogger("mask3d_vit.data")


def convert(src: SourceConfig, out: str | Path, *, splits: tuple[str, ...] | None = None, skip_bad: bool = False,
            labelled_only: bool = False, checkpoint_every: int = 100, progress: bool = False) -> Path:
    """Write the frames of ``src`` into a frames folder at ``out``; returns the path of its ``meta.json``.

    Args:
        src: the source (format, root and options).
        out: output folder; an earlier, interrupted conversion there is resumed.
        splits: splits to convert (default: those of the format's, :meth:`DatasetFormat.splits_of`, that the source
            has frames of); ``"all"`` = every frame. A split named here without frames is an error.
        skip_bad: log and skip frames that fail to load instead of stopping.
        labelled_only: write only the frames that have a label map (split lists then list those).
        checkpoint_every: refresh ``meta.json`` and split lists after this many frames.
        progress: show a progress bar.

    Raises:
        ValueError: the source has no frames (of the splits asked for, or with a label map for ``labelled_only``).
    """
    fmt = get_format(src.format)
    readers, frames = open_splits(src, splits, labelled_only=labelled_only)
    first = next(iter(readers.values()))
    class_set = getattr(first, "class_set", None)
    depth_range = getattr(first, "depth_range", INDOOR_DEPTH_RANGE)
    writer = FramesWriter(out, classes=list(get_class_set(class_set).names) if class_set else [],
                          class_set=class_set, depth_scale=fmt.depth_scale,
                          source=f"mask3d-vit data convert {src.format} {src.root}",
                          depth_range=None if tuple(depth_range) == INDOOR_DEPTH_RANGE else depth_range)
    done: dict[str, list[str]] = {name: [] for name in readers if name != "all"}
    written = 0
    for name, reader in readers.items():
        indices = frames[name]
        if progress:
            from tqdm import tqdm
            indices = tqdm(indices, desc=f"convert {name}", unit="frame")
        for i in indices:
            fid = _frame_id(reader, i)
            if fid is None or not writer.exists(fid):
                sample = read_frame(reader, i, name, skip_bad)
                if sample is None:
                    continue
                fid = sample["frame_id"]
                _write(writer, sample)
                written += 1
                if written % checkpoint_every == 0:
                    writer.finish(done)
            if name != "all":
                done[name].append(fid)
    return writer.finish(done)


def open_splits(src: SourceConfig, splits: tuple[str, ...] | None = None, *,
                labelled_only: bool = False) -> tuple[dict, dict[str, range | list[int]]]:
    """The splits of ``src`` that ``data convert`` and ``data pack`` write, and which of their frames.

    Args:
        src: the source.
        splits: split names (``"all"`` = every frame); each must have frames. Default: the format's splits
            (:meth:`DatasetFormat.splits_of`) that the source has frames of.
        labelled_only: keep only the frames that have a label map.

    Returns:
        Split name -> reader, and split name -> the indices of its frames to write (same keys, in order).
    """
    readers = (_open_splits(src, splits) if splits else
               _open_splits(src, get_format(src.format).splits_of(src.root), skip_empty=True))
    frames = ({name: range(len(reader)) for name, reader in readers.items()} if not labelled_only
              else _labelled_frames(readers, src.root))
    return {name: readers[name] for name in frames}, frames


def _open_splits(src: SourceConfig, splits, *, skip_empty: bool = False) -> dict:
    """Split name -> reader of ``src``; with ``skip_empty`` a split the source has no frames of is left out (a note
    says so) unless every split is empty."""
    readers, empty = {}, []
    for name in splits:
        try:
            readers[name] = open_source(src, split=None if name == "all" else name)
        except NoFramesError as e:
            if not skip_empty:
                raise
            empty.append((name, e))
    if not readers:
        raise empty[0][1]
    for name, _ in empty:
        logger.warning("%s: no frames of split %r; converting %s", src.root, name, ", ".join(readers))
    return readers


def _labelled_frames(readers: dict, root: str) -> dict[str, list[int]]:
    """Split name -> indices of its frames that have a label map; a split without any is left out (a note says so)
    unless every split is."""
    found = {}
    for name, reader in readers.items():
        unable = ConfigError(f"{root}: its {type(reader).__name__} reader cannot tell labelled frames from their "
                             f"files (no labelled(index) method), so --labelled-only does not apply")
        if not hasattr(reader, "labelled"):
            raise unable
        try:
            found[name] = [i for i in range(len(reader)) if reader.labelled(i)]
        except NotImplementedError:
            raise unable from None
    keep = {name: indices for name, indices in found.items() if indices}
    if not keep:
        counts = ", ".join(f"{len(r)} of split {n!r}" for n, r in readers.items())
        raise ValueError(f"{root}: none of its frames ({counts}) has a label map, so --labelled-only keeps nothing")
    for name in set(found) - set(keep):
        logger.warning("%s: no frame of split %r has a label map; converting %s", root, name, ", ".join(keep))
    return keep


def read_frame(reader, index: int, split: str, skip_bad: bool) -> dict | None:
    """Frame ``index`` of ``reader``; None, after a warning naming the file, when it fails and ``skip_bad``."""
    try:
        return reader[index]
    except Exception as e:  # the reader's message names the file
        if not skip_bad:
            raise
        logger.warning("skipping frame %d of %s: %s", index, split, e)
        return None


def _frame_id(reader, index: int) -> str | None:
    """The id frame ``index`` will get, known without decoding it for format readers (resuming needs it)."""
    return reader.frame_id(reader.frames[index]) if isinstance(reader, Reader) else None


def _write(writer: FramesWriter, sample: dict) -> None:
    valid = sample["valid"][0].numpy()
    depth = np.where(valid, sample[DEPTH][0].numpy(), 0.0)
    writer.write(sample["frame_id"], sample[RGB].permute(1, 2, 0).numpy(), depth,
                 intrinsics=sample[INTRINSICS].tolist(),
                 label=sample[LABEL].numpy() if LABEL in sample else None,
                 instance=sample[INSTANCE].numpy() if INSTANCE in sample else None)


def run_convert(args) -> int:
    """CLI entry: convert, then print where the frames went."""
    from .check import source_from_args
    src = source_from_args(args)
    splits = tuple(s for s in args.splits.split(",") if s) if args.splits else None
    meta = convert(src, args.out, splits=splits, skip_bad=args.skip_bad, labelled_only=args.labelled_only,
                   progress=not args.quiet)
    print(f"wrote {meta.parent} (check it with: mask3d-vit data check {meta.parent})")
    return 0
