"""``mask3d-vit demo``: the whole method on SynthRooms, on a laptop, with nothing to download.

1. Pre-train a ViT-Tiny twice at the same budget on SynthRooms frames rendered on the fly: with the Mask3D objective
   (reconstruct dense depth from 25 % of the colour patches and 25 % of the depth patches) and with the MAE-RGB
   objective (reconstruct the hidden colour patches).
2. From {scratch, MAE-RGB, Mask3D}: fine-tune semantic segmentation (UperNet on a simple feature pyramid, NYU13
   classes) and fit the closed-form linear depth probe on the frozen backbone.
3. Print and save a markdown table (mIoU, pixel accuracy, depth-probe AbsRel and delta1, wall time; the probe's
   image-blind floors under it) and figures:
   reconstructions, both loss curves, and segmentation predictions next to the ground truth.

About 10 minutes on 2 CPU cores; ``--quick`` about 2. The table shows whatever the runs produce: at this size,
differences between rows are small and noisy (one seed); ``benchmarks/transfer.py`` runs the multi-seed protocol.
"""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import numpy as np
import torch

from .config import load_config, save_config
from .data.build import build_dataset
from .data.classes import get_class_set
from .engine.launch import exit_on_stop
from .engine.logger import read_metrics
from .io import write_json, write_png, write_text
from .tasks.compare import CompareConfig, objective_variants, probe_floor_note, run_comparison
from .tasks.finetune import FinetuneConfig, load_dense_model
from .viz import loss_curve, overlay_labels

DEMO_RECIPE = "demo"
# --quick: the same pipeline on fewer frames and epochs (about 2 minutes on 2 cores).
QUICK = ["pretrain.data.sources=[{format: synthrooms, num_frames: 256, seed: 0}]", "pretrain.train.epochs=5",
         "pretrain.val_batches=2", "seg.data.sources=[{format: synthrooms, num_frames: 128, seed: 0}]",
         "seg.train.epochs=4", "seg.eval.max_images=64",
         "depth_probe.data.sources=[{format: synthrooms, num_frames: 128, seed: 0}]", "depth_probe.max_images=64"]


def run_demo(out: str | Path, *, quick: bool = False, overrides: list[str] = ()) -> dict:
    """Run the demo into ``out``; returns the table rows and the paths of what it wrote."""
    out = Path(out)
    t_start = time.time()
    cfg = load_config(CompareConfig, DEMO_RECIPE, (QUICK if quick else []) + list(overrides))
    save_config(cfg, out / "demo_config.yaml")
    p = cfg.pretrain
    print(f"[demo] {p.model.encoder} at {p.data.size[0]}x{p.data.size[1]} on SynthRooms; pre-training "
          f"{p.data.sources[0].num_frames} frames x {p.train.epochs} epochs per objective", flush=True)
    rows = run_comparison(cfg, out, variants=objective_variants(cfg.objectives),
                          log=lambda line: print(f"[demo] {line}", flush=True))
    backbones = {r["backbone"]: r["pretrain_run"] for r in rows}

    figures = {"loss_curves": _loss_curves(backbones, out / "pretrain_loss_curves.png"),
               "segmentation": _segmentation_figure(cfg.seg, rows, out / "segmentation.png")}
    for name, run in backbones.items():
        if run:
            recon = sorted((Path(run) / "figures").glob("*.png"))
            if recon:
                figures[f"reconstruction ({name})"] = recon[-1]
    table = results_table(rows)
    minutes = (time.time() - t_start) / 60
    report = (f"# mask3d-vit demo results\n\n{table}\n\nTotal wall time {minutes:.1f} min"
              f"{' (--quick)' if quick else ''}. One seed: small differences between rows are noise.\n\n"
              + "".join(f"- {k}: `{Path(v).relative_to(out) if Path(v).is_relative_to(out) else v}`\n"
                        for k, v in figures.items()))
    write_text(out / "results.md", report)
    write_json(out / "results.json", {"rows": rows, "figures": {k: str(v) for k, v in figures.items()},
                                      "minutes": minutes, "quick": quick})
    print("\n" + table + "\n", flush=True)
    print(f"[demo] done in {minutes:.1f} min; report: {out / 'results.md'}", flush=True)
    for k, v in figures.items():
        print(f"[demo] {k}: {v}")
    return {"rows": rows, "figures": figures, "report": out / "results.md", "minutes": minutes}


def results_table(rows: list[dict]) -> str:
    """Markdown table of the demo rows (metrics in percent except AbsRel), the probe's floors on a line under it."""
    head = ("| backbone | seg mIoU | seg pixel acc | depth probe AbsRel | depth probe delta1 | wall time (pre-train + "
            "seg + probe) |\n|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        wall = r["pretrain_s"] + r["seg_s"] + r["depth_probe_s"]
        lines.append(f"| {r['backbone']} | {r['seg/miou']:.1f} | {r['seg/pixel_acc']:.1f} | "
                     f"{r['depth_probe/abs_rel']:.3f} | {r['depth_probe/delta1']:.1f} | "
                     f"{wall / 60:.1f} min ({r['pretrain_s']:.0f} + {r['seg_s']:.0f} + {r['depth_probe_s']:.0f} s) |")
    return "\n".join(lines) + f"\n\n{probe_floor_note(rows)}"


def _loss_curves(backbones: dict[str, str], path: Path) -> Path:
    records = []
    for name, run in backbones.items():
        if run:
            records += [{"step": r["step"], f"loss ({name})": r["loss"]} for r in read_metrics(run) if "loss" in r]
    return loss_curve(records, path, title="pre-training loss (each objective on its own scale)")


@torch.no_grad()
def _segmentation_figure(seg_cfg: FinetuneConfig, rows: list[dict], path: Path, num: int = 4) -> Path:
    """Validation frames: RGB | ground truth | one prediction per backbone, labelled in the first row."""
    val = build_dataset(seg_cfg.data, split=seg_cfg.eval.split, train=False, require_labels=True)
    samples = [val[i] for i in range(min(num, len(val)))]
    rgb = torch.stack([s["rgb"] for s in samples])
    labels = [s["label"].numpy() for s in samples]
    palette = get_class_set(load_dense_model(rows[0]["seg_run"])[1].class_set).palette
    preds = [load_dense_model(r["seg_run"])[0].predict(rgb).numpy() for r in rows]
    image = [np.asarray(s["rgb"].permute(1, 2, 0)) for s in samples]
    grid = [np.concatenate([image[i], overlay_labels(image[i], labels[i], palette, alpha=0.7)]
                           + [overlay_labels(image[i], p[i], palette, alpha=0.7) for p in preds], axis=1)
            for i in range(len(samples))]
    canvas = np.concatenate(grid, axis=0)
    write_png(path, _caption(canvas, ["RGB", "ground truth"] + [r["backbone"] for r in rows], image[0].shape[1]))
    return path


def _caption(canvas: np.ndarray, titles: list[str], cell_width: int) -> np.ndarray:
    from PIL import Image, ImageDraw
    bar = Image.new("RGB", (canvas.shape[1], 14), "white")
    draw = ImageDraw.Draw(bar)
    for i, title in enumerate(titles):
        draw.text((i * cell_width + 3, 1), title, fill="black")
    return np.concatenate([np.asarray(bar), canvas], axis=0)


def _main(args: argparse.Namespace) -> None:
    out = Path(args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"))
    if (out / "demo_config.yaml").is_file():
        print(f"[demo] continuing the demo in {out}: finished runs are kept, a stopped one resumes", flush=True)
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no demo; pick another --out")
    again = shlex.join(["mask3d-vit", "demo", "--out", str(out), *(["--quick"] if args.quick else []),
                        *args.overrides])
    with exit_on_stop(again):
        run_demo(out, quick=args.quick, overrides=args.overrides)
