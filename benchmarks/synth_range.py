"""SynthRooms' range: the image-blind floors against the supervised ceiling, for depth and segmentation.

    python benchmarks/synth_range.py [--depth-run DIR] [--seg-run DIR] [--depth-config finetune_synth_depth]
                                     [--seg-config finetune_synth_seg] [--out range.json] [KEY=VALUE ...]

A benchmark measures something only where the same encoder trained for the task (the ceiling) clearly beats the
predictors that never look at the image (the floors of :mod:`mask3d_vit.eval.baselines`: a constant and one value
per pixel position). For each task this fits the floors on the training frames of a fine-tuning recipe (or of a
finished run's ``config.yaml``, so that floor and ceiling see the same frames at the same size), scores them on the
frames the run's evaluation scores (``eval.split``, capped at ``eval.max_images``) and, given a fine-tuning run
directory, reads its ``eval_<split>.json`` as the ceiling. The ceiling runs are ordinary fine-tuning runs from
scratch, e.g.::

    mask3d-vit finetune depth --config finetune_synth_depth --out runs/range_depth
    mask3d-vit finetune seg --config finetune_synth_seg --out runs/range_seg
    python benchmarks/synth_range.py --depth-run runs/range_depth --seg-run runs/range_seg

It prints, per task, the headline metric (depth: delta1, percent; segmentation: mIoU, percent) of each floor and
of the ceiling, the gap between the ceiling and the position-only floor, and the command, commit, hardware and
wall time; ``--out`` also writes them as JSON. ``KEY=VALUE`` overrides apply to a recipe (not to a run's own
config), e.g. ``data.sources=[{format: synthrooms, num_frames: 64, seed: 0}]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from mask3d_vit.config import load_config
from mask3d_vit.data.build import build_dataset
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.eval.baselines import depth_floors, seg_floors
from mask3d_vit.eval.probe import load_ceiling
from mask3d_vit.io import write_json
from mask3d_vit.tasks.finetune import FinetuneConfig, resolve_class_set

HEADLINE = {"depth": "delta1", "seg": "miou"}
TARGET_GAP = 25.0  # points of the headline metric between the ceiling and the position-only floor


def run_config(task: str, recipe: str, run: Path | None, overrides: list[str]) -> FinetuneConfig:
    """The run's own config when a run directory is given (same frames, size and evaluation), else the recipe's
    with ``overrides``."""
    cfg = load_config(FinetuneConfig, run / "config.yaml") if run is not None else \
        load_config(FinetuneConfig, recipe, overrides=overrides)
    return resolve_class_set(dataclasses.replace(cfg, task=task))


def floors(cfg: FinetuneConfig, batch_size: int) -> dict[str, dict]:
    """Fit the floors on ``cfg``'s training frames (un-augmented) and score them on its evaluation frames."""
    seg = cfg.task == "seg"
    train = build_dataset(cfg.data, split="train", train=False, require_labels=seg)
    val = build_dataset(cfg.data, split=cfg.eval.split, train=False, require_labels=seg)
    if cfg.eval.max_images:  # the frames the run's evaluator scores: the first max_images of the split
        val = torch.utils.data.Subset(val, range(min(len(val), cfg.eval.max_images)))
    loader = functools.partial(torch.utils.data.DataLoader, batch_size=batch_size, shuffle=False)
    if seg:
        return seg_floors(loader(train), loader(val), num_classes=get_class_set(cfg.class_set).num_classes)
    return depth_floors(loader(train), loader(val), min_depth=cfg.eval.min_depth, max_depth=cfg.data.max_depth)


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {platform.system()}"


def commit() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for task in HEADLINE:
        parser.add_argument(f"--{task}-run", type=Path, default=None, metavar="DIR",
                            help=f"finished {task} fine-tuning run (its config.yaml and eval_<split>.json)")
        parser.add_argument(f"--{task}-config", default=f"finetune_synth_{task}", metavar="RECIPE",
                            help=f"recipe whose data the floors use when no --{task}-run is given")
    parser.add_argument("--tasks", nargs="+", choices=list(HEADLINE), default=list(HEADLINE))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides (not for a run's config)")
    args = parser.parse_args()
    start = time.perf_counter()
    results = {}
    for task in args.tasks:
        run = getattr(args, f"{task}_run")
        cfg = run_config(task, getattr(args, f"{task}_config"), run, args.overrides)
        metric = HEADLINE[task]
        found = floors(cfg, args.batch_size)
        row = {"frames": [s.num_frames for s in cfg.data.sources if s.format == "synthrooms"],
               "size": list(cfg.data.size), **{f"{kind}_{metric}": m[metric] for kind, m in found.items()}}
        if run is not None:
            ceiling = load_ceiling(run, task, cfg.eval.split)
            row[f"ceiling_{metric}"] = ceiling[metric]
            row["gap"] = ceiling[metric] - row[f"position_{metric}"]
            row["ceiling_run"] = str(run)
        results[task] = row
    wall = time.perf_counter() - start
    print(f"{'task':<6} {'metric':<7} {'constant':>8} {'position':>8} {'ceiling':>8} {'gap':>6}  target gap")
    for task, row in results.items():
        metric = HEADLINE[task]
        ceiling = row.get(f"ceiling_{metric}")
        cells = (f"{ceiling:>8.1f} {row['gap']:>6.1f}  {TARGET_GAP:g} "
                 f"({'met' if row['gap'] >= TARGET_GAP else 'short'})") if ceiling is not None else \
            f"{'-':>8} {'-':>6}  (no run given)"
        print(f"{task:<6} {metric:<7} {row[f'constant_{metric}']:>8.1f} {row[f'position_{metric}']:>8.1f} {cells}")
    meta = {"command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "commit": commit(),
            "hardware": hardware(), "date": time.strftime("%Y-%m-%d"), "wall_s": round(wall, 1)}
    for key, value in meta.items():
        print(f"{key}: {value}")
    if args.out is not None:
        write_json(args.out, {**meta, "results": results})


if __name__ == "__main__":
    main()
