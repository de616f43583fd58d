"""Data loader throughput on real RGB-D frames at 240x320, against the ViT-Tiny pre-training step rate.

The loader must never be what a CPU run waits for: it should deliver at least 3x the images per second that a
ViT-Tiny pre-training step consumes. Sources are the real sample frames in ``../shared/data`` (NYUv2 PNGs, SUN RGB-D
Kinect v2 frames with bit-rotated depth, ICL-NUIM renders as generic pairs), read through
:func:`mask3d_vit.data.build.build_dataset` with the training augmentation (random resized crop, flip, jitter).

    python benchmarks/loader_throughput.py [--size 240 320] [--batch 32] [--workers 2] [--epochs 3]

Reported: the first epoch (decoding every frame from disk) and the following ones (decoded frames cached in each
worker, ``persistent_workers=True``), in images per second, and the pre-training step rate of ``Mask3D`` with a
ViT-Tiny encoder at the same size (bf16 autocast, forward + backward + AdamW) measured in this process.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_sources() -> list[SourceConfig]:
    candidates = [("nyuv2", SHARED / "nyuv2_train_mini", 0.0), ("sunrgbd", SHARED / "sunrgbd_kv2_mini", 0.0),
                  ("pairs", SHARED / "icl_nuim_synthetic" / "icl_nuim_livingroom1_micro", 1000.0)]
    sources = [SourceConfig(format=fmt, root=str(root), split="all", depth_scale=scale)
               for fmt, root, scale in candidates if root.is_dir()]
    if not sources:
        raise SystemExit(f"{SHARED}: no sample frames found; this benchmark needs the shared data folder")
    return sources


def loader_rates(cfg: DataConfig, *, batch: int, workers: int, epochs: int) -> list[float]:
    """Images per second of each epoch (the first one decodes from disk, later ones hit the caches)."""
    dataset = build_dataset(cfg, split="train", train=True)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for b in loader:
            seen += b["rgb"].shape[0]
        rates.append(seen / (time.perf_counter() - start))
    return rates


def pretrain_rate(size: tuple[int, int], *, batch: int, steps: int = 4) -> float | None:
    """ViT-Tiny Mask3D pre-training images per second at ``size`` (None when the model is not available)."""
    try:
        from mask3d_vit.models.mask3d import Mask3D
        from mask3d_vit.models.vit import set_attention_backend
    except ImportError:
        return None
    model = Mask3D(encoder="vit_tiny_patch16", img_size=size)
    set_attention_backend(model, "cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch_dict = {"rgb": torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8),
                  "depth": torch.rand(batch, 1, *size) * 4 + 0.5}
    batch_dict["valid"] = batch_dict["depth"] > 0

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(batch_dict)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    size = tuple(args.size)
    torch.set_num_threads(2)
    cfg = DataConfig(sources=real_sources(), size=size)
    rates = loader_rates(cfg, batch=args.batch, workers=args.workers, epochs=args.epochs)
    model_rate = pretrain_rate(size, batch=args.batch)
    warm = max(rates[1:] or rates)
    result = {"size": list(size), "batch": args.batch, "workers": args.workers,
              "frames": len(build_dataset(cfg, split="train")), "loader_img_s_first_epoch": round(rates[0], 1),
              "loader_img_s_cached": round(warm, 1),
              "pretrain_vit_tiny_img_s": None if model_rate is None else round(model_rate, 1)}
    if model_rate:
        result["loader_over_pretrain"] = round(warm / model_rate, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
