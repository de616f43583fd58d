"""What the trainer's data loader delivers per CPU core on real 480x640 RGB-D frames: frames folder vs packed store.

The frames are the real NYUv2 and SUN RGB-D samples of ``../shared/data``, written by ``data convert`` (PNG colour and
16-bit PNG depth) and repeated under new ids to ``--frames`` frames, then packed with ``data pack`` (its default
392x523, JPEG q95 colour, zstd depth). Each path is read through the trainer's own pieces (``build_dataset``,
``SeededDataset``, ``ResumableSampler``, ``make_loader``) with the pre-training augmentation at 240x320, for several
epochs, in this process (``num_workers=0``: the dataset and its cache live on across epochs, as they do in persistent
workers). The packed store is read with the colour jitter in the loader (the default) and with it left to the training
device (``data.augment_on_device``), and decoded alone: the ceiling of any augmentation on the loader's CPUs.

    python benchmarks/loader_throughput.py [--frames 400] [--epochs 3] [--step-rate 1100] [--json out.json]

Reported per path and epoch: samples per second per core, from the CPU time of this process (one torch thread), which
other jobs on a shared machine disturb far less than wall time; and the cores a GPU needs at ``--step-rate`` images
per second (the ViT-B step at 240x320 of docs/paper_scale.md). Also the sharpness of a random resized crop of half the
frame's area, read from frames stored at several sizes, relative to the same crop of the full-resolution frame: a
stored size whose crops come out below 1 upsamples them.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.convert import convert
from mask3d_vit.data.frames import FramesDataset, FramesWriter, read_meta
from mask3d_vit.data.packed import PackedDataset, pack
from mask3d_vit.data.sample import RGB
from mask3d_vit.data.transforms import center_box, crop_cover_size, resized_crop, shrink_to_cover
from mask3d_vit.engine.data import ResumableSampler, SeededDataset, make_loader

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_frames(work: Path, count: int) -> Path:
    """NYUv2 and SUN RGB-D sample frames converted to frames folders, repeated under new ids to ``count`` frames."""
    parts = [("nyuv2", SHARED / "nyuv2_train_mini"), ("sunrgbd", SHARED / "sunrgbd_kv2_mini")]
    if not all(root.is_dir() for _, root in parts):
        raise SystemExit(f"{SHARED}: the NYUv2 / SUN RGB-D sample frames are missing; this benchmark needs them")
    converted = []
    for fmt, root in parts:
        convert(SourceConfig(fmt, root=str(root)), work / fmt, splits=("all",))
        converted += [(work / fmt, fid) for fid in FramesDataset(work / fmt, None).ids]
    out = work / "frames"
    writer = FramesWriter(out, depth_scale=1000.0, source="benchmarks/loader_throughput.py")
    for kind in ("rgb", "depth"):
        (out / kind).mkdir(parents=True)
    for n in range(count):
        folder, fid = converted[n % len(converted)]
        new = f"r{n // len(converted):03d}_{fid}"
        for kind in ("rgb", "depth"):
            shutil.copyfile(folder / kind / f"{fid}.png", out / kind / f"{new}.png")
        meta = read_meta(folder)
        writer.intrinsics[new] = meta.get("frame_intrinsics", {}).get(fid) or meta["intrinsics"]
    writer.finish({})
    return out


def cpu_rates(source: SourceConfig, *, size, batch: int, epochs: int, cache: bool, on_device: bool) -> list[float]:
    """Samples per CPU-second of each epoch through the trainer's loader (one process, one torch thread); with
    ``on_device`` the colour jitter is left to the training device (``data.augment_on_device``), so not counted."""
    cfg = DataConfig(sources=[source], size=size, cache=cache, augment_on_device=on_device)
    dataset = SeededDataset(build_dataset(cfg, split="train", train=True), seed=0)
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=0)
    loader = make_loader(dataset, batch_size=batch, sampler=sampler, num_workers=0, seed=0)
    rates = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        start, seen = time.process_time(), 0
        for b in loader:
            seen += b[RGB].shape[0]
        rates.append(seen / (time.process_time() - start))
    return rates


def decode_rate(packed: Path, epochs: int) -> list[float]:
    """Samples per CPU-second of reading the packed store alone (JPEG + zstd decode and ``make_sample``, no depth
    range, crop, flip or jitter): the ceiling of any augmentation run on the loader's CPUs."""
    store = PackedDataset(packed)
    rates = []
    for _ in range(epochs):
        start = time.process_time()
        for i in range(len(store)):
            store[i]
        rates.append(len(store) / (time.process_time() - start))
    return rates


def sharpness(rgb: torch.Tensor) -> float:
    """Mean absolute difference of horizontally and vertically adjacent pixels (grey levels)."""
    g = rgb.float().mean(0)
    return float((g[1:] - g[:-1]).abs().mean() + (g[:, 1:] - g[:, :-1]).abs().mean())


def crop_sharpness(frames: Path, size, stored_sizes, area: float = 0.5) -> dict[str, float]:
    """Sharpness of a centred crop of ``area`` of the frame resized to ``size``, read from frames stored at each of
    ``stored_sizes``, relative to the same crop of the full-resolution frame (mean over the frames)."""
    dataset = FramesDataset(frames, None)

    def crop(sample):
        h, w = sample[RGB].shape[-2:]
        box_h, box_w = round(h * area ** 0.5), round(w * area ** 0.5)
        top, left, crop_h, crop_w = center_box(box_h, box_w, size)
        return resized_crop(sample, (h - box_h) // 2 + top, (w - box_w) // 2 + left, crop_h, crop_w, size)[RGB]

    out = {}
    for stored in stored_sizes:
        ratios = [sharpness(crop(shrink_to_cover(dataset[i], stored))) / sharpness(crop(dataset[i]))
                  for i in range(min(len(dataset), 40))]
        out["x".join(map(str, stored))] = round(statistics.mean(ratios), 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=400, help="frames per path (the sample frames repeated)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--step-rate", type=float, default=1100.0,
                        help="images per second one GPU consumes (ViT-B at 240x320, docs/paper_scale.md)")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    size = tuple(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = real_frames(work, args.frames)
        packed = work / "packed"
        pack(SourceConfig("frames", root=str(frames)), packed, splits=("all",))
        stored_mb = sum(p.stat().st_size for p in packed.iterdir()) / 2**20
        folder_src = SourceConfig("frames", root=str(frames), split="all")
        packed_src = SourceConfig("packed", root=str(packed), split="all")
        paths = {"frames folder (PNG), cache off": (folder_src, False, False),
                 "frames folder (PNG), cache on": (folder_src, True, False),
                 "packed store (data pack default size), cache off": (packed_src, False, False),
                 "packed store, cache off, colour jitter on the device": (packed_src, False, True)}
        rows = []
        for name, (source, cache, on_device) in paths.items():
            rates = cpu_rates(source, size=size, batch=args.batch, epochs=args.epochs, cache=cache,
                              on_device=on_device)
            best = statistics.median(rates[1:] or rates)
            rows.append({"path": name, "samples_per_s_per_core": [round(r, 1) for r in rates],
                         "cores_per_gpu": round(args.step_rate / best, 2)})
            print(json.dumps(rows[-1]), flush=True)
        rates = decode_rate(packed, args.epochs)
        rows.append({"path": "packed store, decode only (no augmentation)",
                     "samples_per_s_per_core": [round(r, 1) for r in rates],
                     "cores_per_gpu": round(args.step_rate / statistics.median(rates[1:] or rates), 2)})
        print(json.dumps(rows[-1]), flush=True)
        result = {"size": list(size), "frames": args.frames, "epochs": args.epochs, "step_rate": args.step_rate,
                  "packed_mb_per_100k_frames": round(stored_mb / args.frames * 1e5), "rows": rows,
                  "crop_sharpness_vs_full_resolution": crop_sharpness(
                      frames, size, [size, (300, 400), (360, 480), crop_cover_size(size)])}
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
