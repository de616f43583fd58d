"""Which 12x16 token grid costs less on a CPU: 96x128 frames with 8-pixel patches, or 192x256 with 16-pixel ones?

Both give the encoder the same 192 tokens; the frames, the patch embedding and the dense heads differ. Times one
thread (what a worker of ``benchmarks/transfer.py`` has), bf16 autocast where the CPU has it, per image:

- pre-training steps of the Mask3D default design (every colour patch encoded) and of MAE-RGB (a quarter of them),
  forward + backward + AdamW, batch 32;
- segmentation fine-tuning steps (ViT + the narrow UperNet of the protocol), batch 16;
- rendering a SynthRooms frame;
- the cost of a Mask3D step over an MAE-RGB step, in wall time and in FLOPs (forward + backward, counted by
  ``torch.utils.flop_counter``): ``compute_ratio`` of ``transfer_cpu`` gives MAE-RGB that many more steps;

and the 6x8 grid of 96x128 / 16 for reference::

    python benchmarks/token_grid.py [--threads 1] [--rounds 3]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from mask3d_vit.data.synthrooms import SynthRoomsConfig, render_frame
from mask3d_vit.engine.trainer import resolve_precision
from mask3d_vit.models.dense import DenseModel, DenseModelConfig
from mask3d_vit.models.mask3d import Mask3D

GRIDS = {"96x128 / 8 (12x16)": ("vit_tiny_patch8", (96, 128)), "192x256 / 16 (12x16)": ("vit_tiny_patch16", (192, 256)),
         "96x128 / 16 (6x8)": ("vit_tiny_patch16", (96, 128))}
MASK3D = dict(rgb_mask_ratio=0.0, depth_mask_ratio=0.75, loss_region="depth_hidden", depth_prior="interpolation")
MAE = dict(objective="rgb", rgb_mask_ratio=0.75)


def images_per_second(model: torch.nn.Module, batch: dict, precision: str, rounds: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(rounds):
        step()
    return rounds * batch["rgb"].shape[0] / (time.perf_counter() - start)


def train_flops(model: torch.nn.Module, batch: dict) -> float:
    """FLOPs of one forward + backward pass on ``batch`` (matrix products and attention; float32, no autocast)."""
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    print(f"{args.threads} thread(s), {precision}; images per second (higher is better)\n")
    print("| grid (size / patch) | pre-train Mask3D | pre-train MAE-RGB | seg fine-tune | SynthRooms render "
          "| Mask3D / MAE step: time | Mask3D / MAE step: FLOPs |")
    print("|---|---|---|---|---|---|---|")
    for name, (encoder, size) in GRIDS.items():
        g = torch.Generator().manual_seed(0)
        rates, flops = [], []
        for design in (MASK3D, MAE):
            model = Mask3D(encoder=encoder, img_size=size, **design)
            batch = {"rgb": torch.randint(0, 256, (32, 3, *size), dtype=torch.uint8, generator=g),
                     "depth": 0.5 + 5 * torch.rand(32, 1, *size, generator=g)}
            flops.append(train_flops(model, batch))
            model.set_attention_backend("cpu", precision)
            rates.append(images_per_second(model, batch, precision, args.rounds))
        seg = DenseModel.from_config(DenseModelConfig(encoder=encoder, img_size=size, neck_channels=64,
                                                      head_channels=64, aux_weight=0.0), task="seg", num_classes=14)
        seg.set_attention_backend("cpu", precision)
        batch = {"rgb": torch.randint(0, 256, (16, 3, *size), dtype=torch.uint8, generator=g),
                 "label": torch.randint(0, 14, (16, *size), generator=g)}
        rates.append(images_per_second(seg, batch, precision, args.rounds))
        cfg = SynthRoomsConfig(size=size)
        render_frame(0, 0, cfg)
        start = time.perf_counter()
        for i in range(1, 21):
            render_frame(i, 0, cfg)
        rates.append(20 / (time.perf_counter() - start))
        print(f"| {name} | " + " | ".join(f"{r:.1f}" for r in rates)
              + f" | {rates[1] / rates[0]:.2f} | {flops[0] / flops[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
