"""SynthRooms frames written to a frames folder (:mod:`mask3d_vit.data.frames`), resumable."""
from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

from ...config import to_dict
from ..classes import NYU13
from ..frames import FramesWriter, read_meta
from .settings import CLASS_SET, SynthRoomsConfig, frame_intrinsics
from .dataset import _frame_id
from .render import render_frame

DEPTH_SCALE = 1000.0  # millimetres in the frames folder's uint16 depth PNGs


def _is_val(index: int, fraction: float) -> bool:
    # Frame 0 and then about every (1/fraction)-th frame: a frame's split never depends on how many are written,
    # so growing a folder with a larger ``num`` keeps earlier frames where they were.
    return math.floor(index * fraction) > math.floor((index - 1) * fraction)


def _render_into(root: str, indices: list[int], seed: int, cfg: SynthRoomsConfig) -> None:
    """Render frames ``indices`` of stream ``seed`` into the frames folder ``root`` (one worker's share)."""
    writer = FramesWriter(Path(root), classes=list(NYU13), class_set=CLASS_SET, depth_scale=DEPTH_SCALE, source="")
    for i in indices:
        f = render_frame(i, seed, cfg)
        writer.write(_frame_id(seed, i), f["rgb"], f["depth"], intrinsics=f["intrinsics"], label=f["label"],
                     instance=f["instance"])


def write_synthrooms(out: str | Path, num: int, *, seed: int = 0, cfg: SynthRoomsConfig | None = None,
                     val_fraction: float = 0.1, progress: bool = True, workers: int = 1) -> Path:
    """Render frames 0..num-1 of stream ``seed`` into a frames folder (:mod:`mask3d_vit.data.frames`).

    Resumable: frames already on disk are kept, so an interrupted run, or a later run with a larger ``num``, only
    renders what is missing. The folder must have been written with the same seed and config.

    Args:
        out: output folder (created).
        num: number of frames.
        seed: stream seed.
        cfg: generator options (defaults: :class:`SynthRoomsConfig`).
        val_fraction: share of frames listed in ``val.txt`` (frame 0, then about every 1/val_fraction-th frame);
            the rest go to ``train.txt``.
        progress: show a progress bar.
        workers: processes that render missing frames at once (frames are independent: 16 cores render a 100k-frame
            folder ~16x faster than one).

    Returns:
        The folder.
    """
    from tqdm import tqdm

    cfg = cfg or SynthRoomsConfig()
    if num < 1:
        raise ValueError(f"write_synthrooms: num must be >= 1, got {num}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"write_synthrooms: val_fraction must lie in [0, 1), got {val_fraction}")
    root = Path(out)
    source = f"SynthRooms (mask3d_vit.data.synthrooms), seed {seed}, config {json.dumps(to_dict(cfg))}"
    if (root / "meta.json").is_file():
        previous = read_meta(root).get("source")
        if previous != source:
            raise ValueError(f"{root}: already holds frames from another source ({previous!r}); "
                             f"write to a new folder, or repeat that run's seed and config to extend it")
    writer = FramesWriter(root, classes=list(NYU13), class_set=CLASS_SET, depth_scale=DEPTH_SCALE, source=source)
    missing = [i for i in range(num) if not writer.exists(_frame_id(seed, i))]
    if workers > 1 and len(missing) > 1:
        # Workers write the frames' files; the loop below then only lists them (as when resuming) and writes meta.
        # "fork": rendering is plain numpy, and a forked child re-imports nothing of the caller's script.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            pool.starmap(_render_into, [(str(root), missing[k::workers], seed, cfg) for k in range(workers)])
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for i in tqdm(range(num), desc=f"synthrooms -> {root}", unit="frame", disable=not progress):
        fid = _frame_id(seed, i)
        splits["val" if _is_val(i, val_fraction) else "train"].append(fid)
        if writer.exists(fid):
            # meta.json lists the intrinsics of every frame, kept or new (and the field of view varies per frame).
            writer.intrinsics[fid] = [float(v) for v in frame_intrinsics(i, seed, cfg)]
            continue
        f = render_frame(i, seed, cfg)
        writer.write(fid, f["rgb"], f["depth"], intrinsics=f["intrinsics"], label=f["label"], instance=f["instance"])
    writer.finish(splits)
    return root
