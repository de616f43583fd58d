"""Pre-training step throughput and peak memory: mask3d-vit against Hugging Face ``ViTMAEForPreTraining``.

Both models get the same encoder and decoder (``--arch tiny``: ViT-Tiny, 192-d x 12 blocks x 3 heads, decoder
128-d x 2 blocks x 4 heads, at 128x128; ``--arch base``: the paper recipe's ViT-B/16, 768-d x 12 x 12, decoder 512-d x
8 blocks x 16 heads, depth branch 256-d x 2 x 8, at 240x320, i.e. ``pretrain_scannet_base``), the same image size
and colour mask ratio, and run in this one process, one after the other, in fp32 and in bf16
autocast. A step is forward + backward + AdamW (fused, as each library's trainer runs it). Ours does more work (a
depth branch with its own masked tokens that also enter the decoder) and should still be faster. The matmul peak
measured in the same run tells how much of the machine each step uses; two "bound" rows time the parts of a step
that the comparison fixes: the colour encoder's pass alone (which every MAE-style model runs) and ours without the
depth branch (that encoder plus the decoder and head).

    pip install -e '.[bench]'          # transformers, only for this benchmark
    python benchmarks/pretrain_throughput.py [--size 128] [--batch 32] [--rounds 5] [--device cpu|cuda]
    python benchmarks/pretrain_throughput.py --compile --models "fusion=add,HF ViTMAE (sdpa)"   # torch.compile
    python benchmarks/pretrain_throughput.py --arch base --batch 4 --steps 1 --rounds 3 \
        --models "fusion=add,HF ViTMAE (sdpa)" --no-memory                         # the paper's step, CPU ratio
    python benchmarks/pretrain_throughput.py --arch base --device cuda --precisions bf16 --batch 128 --compile \
        --models "fusion=add,HF ViTMAE (sdpa)" --peak-tflops 989                 # one H100 SXM: prints MFU

Timing: all models are built first, then timed in interleaved rounds in this process (median round reported).
Peak memory: each model runs a few steps in a fresh interpreter (peak RSS on CPU, peak allocated on CUDA).
``--compile`` times every model through ``torch.compile`` instead (what ``train.compile=true`` does for ours; the
same call for ViTMAE), with FLOPs counted on the eager twin; ratios compare models run the same way.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from mask3d_vit.engine.optim import OptimConfig, build_optimizer
from mask3d_vit.engine.trainer import resolve_precision
from mask3d_vit.models.mask3d import Mask3D, random_masking
from mask3d_vit.models.vit import set_attention_backend


def matmul_gflops(device: torch.device, dtype: torch.dtype, reps: int = 10) -> float:
    n = 8192 if device.type == "cuda" else 2048  # a GPU needs a large product to reach its peak
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device) -> int:
    """Reset the peak-memory counter; returns the current usage in bytes (the baseline)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM (peak RSS) to the current RSS
    return _status_kb("VmRSS") * 1024


def _peak(device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated()
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


# Each architecture in the arguments of both libraries: (ours: Mask3D keywords, HF: ViTMAEConfig keywords, size).
ARCHS = {
    "tiny": (dict(encoder="vit_tiny_patch16", decoder_dim=128, decoder_depth=2, decoder_heads=4),
             dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
                  decoder_hidden_size=128, decoder_num_hidden_layers=2, decoder_num_attention_heads=4,
                  decoder_intermediate_size=512), (128, 128)),
    # configs/pretrain_scannet_base.yaml (mask3d_vit_base_patch16_dec512d8b) and MAE's ViT-B decoder.
    "base": (dict(encoder="vit_base_patch16", decoder_dim=512, decoder_depth=8, decoder_heads=16, depth_dim=256,
                  depth_heads=8),
             dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  decoder_hidden_size=512, decoder_num_hidden_layers=8, decoder_num_attention_heads=16,
                  decoder_intermediate_size=2048), (240, 320)),
}


def ours(size: tuple[int, int], batch: int, device: torch.device, precision: str, fusion: str = "add",
         depth_mask_ratio: float = 0.75, arch: str = "tiny"):
    model = Mask3D(img_size=tuple(size), objective="depth", rgb_mask_ratio=0.75, depth_mask_ratio=depth_mask_ratio,
                   fusion=fusion, **ARCHS[arch][0]).to(device)
    set_attention_backend(model, device, precision)
    g = torch.Generator().manual_seed(0)
    batch_dict = {"rgb": torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8, generator=g).to(device),
                  "depth": (torch.rand(batch, 1, *size, generator=g) * 5 + 0.5).to(device)}
    return model, lambda module: module(batch_dict)["loss"]


class EncoderAlone(torch.nn.Module):
    """A bound: the colour encoder on its visible tokens and nothing else (no decoder, depth branch or
    reconstruction target; the loss is a stand-in). Every MAE-style model of this encoder and mask ratio runs this
    pass, so its speed over ViTMAE's whole step bounds what any such model on these kernels can reach."""

    def __init__(self, model: Mask3D):
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        n = (rgb.shape[-2] // self.model.patch_size) * (rgb.shape[-1] // self.model.patch_size)
        keep, _ = random_masking(rgb.shape[0], n, self.model.rgb_mask_ratio, rgb.device)
        return self.model.forward_encoder(rgb, keep).float().square().mean()


def encoder_alone(size: tuple[int, int], batch: int, device: torch.device, precision: str, arch: str = "tiny"):
    model, _ = ours(size, batch, device, precision, arch=arch)
    rgb = torch.randint(0, 256, (batch, 3, *size), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0)).to(device)
    return EncoderAlone(model), lambda module: module(rgb)


def huggingface(size: tuple[int, int], batch: int, device: torch.device, attn: str, arch: str = "tiny"):
    from transformers import ViTMAEConfig, ViTMAEForPreTraining
    cfg = ViTMAEConfig(image_size=tuple(size), patch_size=16, mask_ratio=0.75, norm_pix_loss=True,
                       attn_implementation=attn, **ARCHS[arch][1])
    from transformers.models.vit_mae.modeling_vit_mae import ViTMAEDecoder
    square_only = ViTMAEDecoder.initialize_weights
    if size[0] != size[1]:
        # ViTMAE fills its decoder's fixed sin-cos positions on a square grid only (301 tokens do not fit 17x17 + 1);
        # those values do not change what a step costs, so they stay zeros on a non-square grid.
        ViTMAEDecoder.initialize_weights = lambda self, num_patches: None
    try:
        model = ViTMAEForPreTraining(cfg).to(device)
    finally:
        ViTMAEDecoder.initialize_weights = square_only
    # Its loss target (patchify) refuses non-square images unless told they are intended; the arithmetic is the same.
    model.patchify = lambda pixels, interpolate_pos_encoding=False: ViTMAEForPreTraining.patchify(model, pixels, True)
    pixels = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    return model, lambda module: module(pixel_values=pixels).loss


MODELS = {
    "mask3d-vit (fusion=concat)": lambda size, batch, device, precision, arch: ours(
        size, batch, device, precision, "concat", arch=arch),
    "mask3d-vit (fusion=add)": lambda size, batch, device, precision, arch: ours(
        size, batch, device, precision, "add", arch=arch),
    "HF ViTMAE (sdpa)": lambda size, batch, device, precision, arch: huggingface(size, batch, device, "sdpa", arch),
    "HF ViTMAE (eager)": lambda size, batch, device, precision, arch: huggingface(size, batch, device, "eager", arch),
    "bound: encoder alone": encoder_alone,
    # Ours without its extra work: no depth input, dense depth from colour alone through the same encoder, decoder
    # and head, the parts the comparison fixes.
    "bound: no depth branch": lambda size, batch, device, precision, arch: ours(
        size, batch, device, precision, depth_mask_ratio=1.0, arch=arch),
}


def make_step(name: str, args, device, precision: str, compiled: bool = False):
    model, loss_fn = MODELS[name](args.size, args.batch, device, precision, args.arch)
    if not name.startswith("HF"):
        opt = build_optimizer(model, OptimConfig(base_lr=1e-4))  # the optimizer our trainer runs (fused AdamW)
    else:  # the Hugging Face Trainer's default optimizer, "adamw_torch_fused"
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=True)
    module = torch.compile(model) if compiled else model

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_fn(module)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def peak_memory_mb(name: str, args, precision: str) -> float:
    """Peak memory of a few steps, measured in a fresh interpreter so no other model's freed memory is reused."""
    cmd = [sys.executable, __file__, "--memory-of", name, "--precision", precision, "--size", *map(str, args.size),
           "--arch", args.arch, "--batch", str(args.batch), "--device", args.device] + \
        (["--compile"] if args.compile else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def _memory_child(args) -> None:
    device = torch.device(args.device)
    base = _reset_peak(device)
    step = make_step(args.memory_of, args, device, args.precision, args.compile)
    for _ in range(3):
        step()
    print((_peak(device) - base) / 2**20)


def compare(args, device, precision: str) -> dict[str, dict]:
    """Time every model on interleaved rounds (the median round wins), so load on a shared machine hits all alike."""
    steps = {name: make_step(name, args, device, precision, args.compile) for name in args.models}
    flops = {}
    for name in args.models:  # counted on eager models: a compiled step does the same arithmetic
        step = make_step(name, args, device, precision) if args.compile else steps[name]
        with FlopCounterMode(display=False) as counter:
            step()
        flops[name] = counter.get_total_flops()
    for name, step in steps.items():  # warm-up (and compilation)
        t = time.perf_counter()
        step()
        step()
        _sync(device)
        print(f"  ({precision} {name}: warm-up{' and compilation' if args.compile else ''} "
              f"{time.perf_counter() - t:.1f} s)", file=sys.stderr, flush=True)
    times = {name: [] for name in args.models}
    for _ in range(args.rounds):
        for name, step in steps.items():
            _sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                step()
            _sync(device)
            times[name].append((time.perf_counter() - t) / args.steps)
    out = {}
    for name in args.models:
        seconds = statistics.median(times[name])
        out[name] = {"img_per_s": args.batch / seconds, "step_ms": seconds * 1e3, "gflop_per_step": flops[name] / 1e9,
                     "achieved_gflops": flops[name] / seconds / 1e9,
                     "peak_mem_mb": peak_memory_mb(name, args, precision) if args.memory else float("nan")}
    return out


def default_precisions(device: torch.device) -> tuple[str, ...]:
    """fp32, plus bf16 where the device has it natively (what ``train.precision=auto`` would pick).

    Args:
        device: the device the benchmark runs on.
    """
    # Without native bf16 (e.g. an AVX2-only CPU) autocast emulates it ~15x slower than fp32: nobody trains that way.
    return ("fp32", "bf16") if resolve_precision("auto", device) == "bf16" else ("fp32",)


def _model_name(part: str) -> str:
    hits = [name for name in MODELS if part.strip() in name]
    if len(hits) != 1:
        raise SystemExit(f"--models {part!r}: matches {len(hits)} of {', '.join(MODELS)}; name exactly one")
    return hits[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=ARCHS, default="tiny",
                        help="tiny: ViT-Tiny, decoder 128x2 (default); base: the paper recipe's ViT-B/16, decoder 512x8")
    parser.add_argument("--size", type=int, nargs="+", default=None, metavar="PX",
                        help="image size: one number (square) or H W (default: 128 for tiny, 240 320 for base)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated subset of fp32,bf16 (default: bf16 only where the hardware has it)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of the models (a name or a unique part of it)")
    parser.add_argument("--compile", action="store_true", help="run every model through torch.compile")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory children (each one compiles again under --compile)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for the precision timed (H100 SXM bf16: 989, A100: 312): "
                             "adds model FLOP utilisation (MFU) against it")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.models = [_model_name(part) for part in args.models.split(",")]
    args.size = tuple(args.size or ARCHS[args.arch][2])
    if len(args.size) == 1:
        args.size = (args.size[0], args.size[0])
    elif len(args.size) != 2:
        raise SystemExit(f"--size {' '.join(map(str, args.size))}: give one number or H W")
    if args.memory_of:
        return _memory_child(args)
    device = torch.device(args.device)
    native = default_precisions(device)
    precisions = tuple(args.precisions.split(",")) if args.precisions else native
    peaks = {p: matmul_gflops(device, torch.float32 if p == "fp32" else torch.bfloat16) for p in precisions}
    chip = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    name = {"tiny": "ViT-Tiny, decoder 128x2", "base": "ViT-B/16, decoder 512x8"}[args.arch]
    print(f"device {device} ({chip}), torch {torch.__version__}, {name} @ {args.size[0]}x{args.size[1]}, batch "
          f"{args.batch}, mask 0.75{', torch.compile' if args.compile else ''}")
    print("matmul peak: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in peaks.items())
          + ("" if "bf16" in native else " (no native bf16 here: bf16 skipped unless --precisions asks for it)"))
    print(f"{'precision':9} {'model':26} {'img/s':>8} {'ms/step':>8} {'GFLOP/step':>10} {'GFLOP/s':>8} "
          f"{'% peak':>7} {'peak MB':>8}")
    rows = []
    for precision in precisions:
        results = compare(args, device, precision)
        for name, r in results.items():
            print(f"{precision:9} {name:26} {r['img_per_s']:8.1f} {r['step_ms']:8.1f} {r['gflop_per_step']:10.1f} "
                  f"{r['achieved_gflops']:8.1f} {100 * r['achieved_gflops'] / peaks[precision]:6.1f}% "
                  f"{r['peak_mem_mb']:8.0f}")
            if args.peak_tflops:
                r["mfu"] = r["achieved_gflops"] / (args.peak_tflops * 1e3)
                print(f"{'':9} {name:26} MFU {100 * r['mfu']:.1f} % of {args.peak_tflops:g} TFLOP/s")
            rows.append({"precision": precision, "model": name, "compiled": args.compile, "arch": args.arch, **r})
        hf = [r for n, r in results.items() if n.startswith("HF")]
        if not hf:
            continue
        best_hf = max(hf, key=lambda r: r["img_per_s"])
        for name in (n for n in results if not n.startswith("HF")):
            r = results[name]
            memory = f", {r['peak_mem_mb'] / best_hf['peak_mem_mb']:.2f}x peak memory" if args.memory else ""
            print(f"{precision}: {name} / best HF = {r['img_per_s'] / best_hf['img_per_s']:.2f}x img/s{memory}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_gflops": peaks, "rows": rows, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
