"""``mask3d-vit demo``: the whole method on SynthRooms, on a laptop, with nothing to download.

Renders SynthRooms frames on the fly, pre-trains a ViT-Tiny with the Mask3D objective (reconstruct dense depth from
25 % of the colour patches and 25 % of the depth patches), and writes the reconstruction figure and the loss curve.
About 10 minutes on 2 CPU cores; ``--quick`` about 2.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from .config import load_config, save_config
from .engine.logger import read_metrics
from .tasks.pretrain import PretrainConfig, run_pretrain
from .viz import loss_curve

DEMO_RECIPE = "demo"
QUICK = ["data.sources=[{format: synthrooms, num_frames: 256, seed: 0}]", "train.epochs=6", "val_batches=2"]


def run_demo(out: Path, quick: bool = False, overrides: list[str] = ()) -> dict:
    """Run the demo into ``out``; returns paths of what it wrote and the final losses."""
    t0 = time.time()
    cfg = load_config(PretrainConfig, DEMO_RECIPE, (QUICK if quick else []) + list(overrides))
    run_dir = out / "pretrain-mask3d"
    save_config(cfg, run_dir / "config.yaml")
    print(f"[demo] pre-training {cfg.model.encoder} with the Mask3D objective on "
          f"{cfg.data.sources[0].num_frames} SynthRooms frames at {cfg.data.size[0]}x{cfg.data.size[1]}, "
          f"{cfg.train.epochs} epochs", flush=True)
    result = run_pretrain(cfg, run_dir)
    curve = loss_curve(read_metrics(run_dir), out / "loss_curve.png", title="Mask3D pre-training on SynthRooms")
    figures = sorted((run_dir / "figures").glob("*.png"))
    minutes = (time.time() - t0) / 60
    print(f"[demo] done in {minutes:.1f} min", flush=True)
    print(f"[demo] reconstruction figure: {figures[-1] if figures else 'none'}")
    print(f"[demo] loss curve:            {curve}")
    print(f"[demo] checkpoints:           {run_dir / 'checkpoints'}")
    print(f"[demo] final losses: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.items())
                                              if k.startswith(("loss", "eval/"))))
    return {"run_dir": run_dir, "figure": figures[-1] if figures else None, "loss_curve": curve, **result}


def _main(args: argparse.Namespace) -> None:
    out = Path(args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; pick another --out")
    run_demo(out, quick=args.quick, overrides=args.overrides)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="pre-train on SynthRooms end to end and show the results",
                              description=__doc__)
    p.add_argument("--out", default=None, help="output folder (default: runs/demo-<time>)")
    p.add_argument("--quick", action="store_true", help="smaller settings, about 2 minutes")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="pre-training config overrides")
    p.set_defaults(func=_main)
