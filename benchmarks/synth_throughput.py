"""SynthRooms rendering throughput in frames per second (target: at least 100 frames/s at 120x160 on 2 CPU cores).

    python benchmarks/synth_throughput.py [--frames 200] [--sizes 120x160 240x320] [--workers 0 2]

``--workers 0`` times ``render_frame`` in this process (one core) and also reports frames per CPU-second, which
is what one idle core would deliver even when other jobs share the machine. ``--workers N`` times a DataLoader with
N worker processes over :class:`SynthRooms` (sample dicts collated into batches of ``--batch``, as training sees
them): that is how 2 cores are used. Wall-clock numbers on a shared machine move with its load; compare within one run.
"""
from __future__ import annotations

import argparse
import time

import torch

from mask3d_vit.cli import parse_size
from mask3d_vit.data.synthrooms import SynthRooms, SynthRoomsConfig, render_frame


def in_process(cfg: SynthRoomsConfig, frames: int, seed: int) -> tuple[float, float]:
    """(frames per wall-clock second, frames per CPU second) of ``render_frame`` in this process."""
    render_frame(0, seed, cfg)  # caches (pixel rays, noise tile) are built once per process
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(frames):
        render_frame(i, seed, cfg)
    return frames / (time.perf_counter() - wall), frames / (time.process_time() - cpu)


def data_loader(cfg: SynthRoomsConfig, frames: int, seed: int, workers: int, batch: int) -> float:
    """Frames per wall-clock second out of a DataLoader with ``workers`` processes, after they have started."""
    batches = max(1, frames // batch)
    warmup = 2 * workers  # batches, so that the workers are up before the clock starts
    loader = torch.utils.data.DataLoader(SynthRooms((batches + warmup) * batch, seed=seed, cfg=cfg),
                                         batch_size=batch, num_workers=workers)
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200, help="frames timed per setting (default 200)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(120, 160), (240, 320)], metavar="HxW")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2],
                        help="0 = render in this process; N > 0 = DataLoader with N workers (default: 0 2)")
    parser.add_argument("--batch", type=int, default=32, help="DataLoader batch size (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # rendering is numpy; keep torch from competing for the cores
    print(f"{'size':>9}  {'workers':>7}  {'frames/s':>8}  {'frames/CPU-s':>12}")
    for size in args.sizes:
        cfg = SynthRoomsConfig(size=size)
        for workers in args.workers:
            if workers == 0:
                fps, cpu_fps = in_process(cfg, args.frames, args.seed)
                print(f"{size[0]:>4}x{size[1]:<4}  {workers:>7}  {fps:>8.1f}  {cpu_fps:>12.1f}", flush=True)
            else:
                fps = data_loader(cfg, args.frames, args.seed, workers, args.batch)
                print(f"{size[0]:>4}x{size[1]:<4}  {workers:>7}  {fps:>8.1f}  {'-':>12}", flush=True)


if __name__ == "__main__":
    main()
