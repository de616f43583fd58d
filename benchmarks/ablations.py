"""Pre-training ablations of the Mask3D objective (issue 7): which settings should be the library's defaults?

Each variant changes one part of the pre-training recipe (``mask3d_vit/configs/ablation_cpu.yaml``) and is scored,
like the comparison of ``benchmarks/transfer.py``, by segmentation fine-tuning and the frozen depth probe:

- ``masking``: colour x depth masking ratio in {0.5, 0.75, 0.9}^2 (``rgb_mask`` / ``depth_mask``: its two axes
  through the recipe's 0.75 / 0.75, five runs instead of nine);
- ``fusion``: depth tokens appended to the decoder sequence (``concat``) or added to their patches' tokens (``add``);
- ``depth_branch``: 0 (linear patch embedding only) vs 2 transformer blocks in the depth branch;
- ``loss_region``: depth loss on all patches (the paper's dense reconstruction), the colour-hidden ones or the
  depth-hidden ones;
- ``pretext``: the masking scheme (independent / complementary), depth mask ratio and loss region that decide
  whether the decoder must read colour, judged first by the pre-training diagnostics ``rgb_reliance`` and
  ``vs_interpolation`` (:mod:`mask3d_vit.eval.pretext`); ``--pretrain-only`` runs just that part (~5 min a variant);
- ``depth_target``: metric, log or per-image standardised depth;
- ``pretrain_epochs``: 16 (the recipe), 64 or 128 epochs of pre-training on the same frames.

Variants whose resolved config is identical (the recipe's own settings appear in every grid) run once. Results are
kept in ``<out>/ablations.json``: run the grids in parts with the same ``--out`` and the report covers all of them::

    python benchmarks/ablations.py --dry-run                       # every grid: the plan and the time estimate
    python benchmarks/ablations.py --grid masking --out runs/ablations
    python benchmarks/ablations.py --grid depth_branch,loss_region,depth_target,fusion --out runs/ablations
    python benchmarks/ablations.py --grid masking --variants "rgb 0.5 / depth 0.75" --out runs/ablations
    python benchmarks/ablations.py --grid pretext --pretrain-only --out runs/pretext   # diagnostics only
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import yaml

from mask3d_vit.config import load_config, save_config, to_dict
from mask3d_vit.io import write_json, write_text
from mask3d_vit.tasks.compare import (SCRATCH, CompareConfig, estimate_seconds, format_estimate, run_comparison,
                                     variant_pretrain)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "ablation_cpu"
RATIOS = (0.5, 0.75, 0.9)


def _masking(rgb_ratios, depth_ratios) -> dict[str, list[str]]:
    return {f"rgb {r:g} / depth {d:g}": [f"model.rgb_mask_ratio={r}", f"model.depth_mask_ratio={d}"]
            for r in rgb_ratios for d in depth_ratios}


GRIDS: dict[str, dict[str, list[str]]] = {
    # rgb_mask and depth_mask are the two axes through the recipe's (0.75, 0.75): the cross of the full grid,
    # for a budget that cannot afford all nine. Their runs count towards "masking" (same variant names).
    "rgb_mask": _masking(RATIOS, (0.75,)),
    "depth_mask": _masking((0.75,), RATIOS),
    "masking": _masking(RATIOS, RATIOS),
    "fusion": {f"fusion {f}": [f"model.fusion={f}"] for f in ("concat", "add")},
    "depth_branch": {f"depth blocks {n}": [f"model.depth_blocks={n}"] for n in (0, 2)},
    "loss_region": {f"loss on {region} patches": [f"model.loss_region={region}"]
                    for region in ("all", "masked", "depth_hidden")},
    # Does the decoder need colour? (issue 14; read rgb_reliance and vs_interpolation first). Colour masked as MAE
    # with each depth scheme, then every colour patch visible; the last row is pretrain_synth_tiny's design.
    "pretext": {
        "colour 0.75, depth 0.75, loss all": [],
        "colour 0.75, loss depth-hidden, prior": ["model.loss_region=depth_hidden", "model.depth_prior=interpolation"],
        "colour 0.75, block depth, loss depth-hidden, prior": [
            "model.mask_scheme=block", "model.loss_region=depth_hidden", "model.depth_prior=interpolation"],
        "colour 0.75, complementary, loss depth-hidden, prior": [
            "model.mask_scheme=complementary", "model.loss_region=depth_hidden", "model.depth_prior=interpolation"],
        "all colour, no depth input (depth 1.0)": ["model.rgb_mask_ratio=0.0", "model.depth_mask_ratio=1.0"],
        "all colour, depth 0.9, loss depth-hidden, prior": [
            "model.rgb_mask_ratio=0.0", "model.depth_mask_ratio=0.9", "model.loss_region=depth_hidden",
            "model.depth_prior=interpolation"],
        "all colour, depth 0.75, loss depth-hidden, prior": [
            "model.rgb_mask_ratio=0.0", "model.loss_region=depth_hidden", "model.depth_prior=interpolation"],
    },
    "depth_target": {f"target {t}": [f"model.depth_target={t}"] for t in ("metric", "log", "standardized")},
    # Longer pre-training on the same frames: does the transfer gap to scratch close with more steps?
    "pretrain_epochs": {f"pre-train {e} epochs": [f"train.epochs={e}"] for e in (16, 64, 128)},
}
AXES = ("rgb_mask", "depth_mask")
GRIDS_OVERRIDES = {name: overrides for grid in GRIDS.values() for name, overrides in grid.items()}
COLUMNS = [("pretrain/rgb_reliance", "rgb_reliance", 2), ("pretrain/vs_interpolation", "vs_interpolation", 2),
           ("pretrain/loss_depth_hidden", "depth-hidden loss", 3), ("seg/miou", "seg mIoU", 1), ("seg/pixel_acc", "seg pixel acc", 1),
           ("depth_probe/abs_rel", "probe AbsRel", 3), ("depth_probe/delta1", "probe delta1", 1),
           ("depth_probe/delta1_med", "probe delta1 (median-scaled)", 1)]


def _identity(cfg: CompareConfig, overrides: list[str]) -> str:
    """The resolved pre-training config of a variant, as text: equal text = the same run."""
    return yaml.safe_dump(to_dict(variant_pretrain(cfg, overrides)), sort_keys=True)


def plan(cfg: CompareConfig, grids: list[str], done: dict[str, dict], *, transfer: bool = True
         ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(variants still to pre-train, name -> the name of the run that answers it) for ``grids``.

    Args:
        cfg: the ablation config.
        grids: names of :data:`GRIDS` to cover.
        done: rows already measured (``<out>/ablations.json``), by variant name.
        transfer: the rows must hold transfer results (a ``--pretrain-only`` row does not count as done then).
    """
    unknown = [g for g in grids if g not in GRIDS]
    if unknown:
        raise SystemExit(f"--grid {','.join(unknown)}: unknown; choose from {', '.join(GRIDS)}")
    # A row keeps the resolved config it ran with: after a change of the recipe or of the library defaults, an old
    # run is neither passed off as a new variant nor kept in place of one (it is run again).
    done_key = {name: row.get("pretrain_config") or _identity(cfg, row["overrides"]) for name, row in done.items()
                if name != SCRATCH and "alias" not in row and not (transfer and row.get("pretrain_only"))}
    by_identity = {key: name for name, key in done_key.items()}
    todo, alias = {}, {}
    for grid in grids:
        for name, overrides in GRIDS[grid].items():
            key = _identity(cfg, overrides)
            alias[name] = by_identity.setdefault(key, name)
            if alias[name] == name and done_key.get(name) != key:
                todo[name] = overrides
    return todo, alias


def table(grid: str, rows: dict[str, dict]) -> str:
    """The grid's rows as markdown, with the columns some row of it measured (a --pretrain-only grid has no
    transfer columns; rows from before the pretext diagnostics have none of those)."""
    names = [SCRATCH] + list(GRIDS[grid]) if SCRATCH in rows else list(GRIDS[grid])
    shown = {name: rows.get(rows[name]["alias"] if name in rows and "alias" in rows[name] else name, {})
             for name in names}
    columns = [c for c in COLUMNS if any(c[0] in row for row in shown.values())]
    lines = ["| variant | " + " | ".join(h for _, h, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    for name, row in shown.items():
        cells = " | ".join(f"{row[k]:.{d}f}" if k in row else "-" for k, _, d in columns)
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def write_report(rows: dict[str, dict], cfg: CompareConfig, report: Path, commands: list[str]) -> str:
    p = cfg.pretrain
    lines = ["# Pre-training ablations (issue 7)", "",
             "**Read the pretext diagnostics at the end of this page first (issue 14):** they show that the "
             "depth-probe columns of these tables measure nothing.", "",
             f"Written by `benchmarks/ablations.py` on {time.strftime('%Y-%m-%d %H:%M')}; one seed per variant "
             f"(seed {cfg.seeds[0]}), so differences of about a point are within run-to-run noise (compare the "
             "standard deviations in `docs/results.md`). Every variant is the recipe `ablation_cpu` "
             f"({p.model.encoder}, {p.data.size[0]}x{p.data.size[1]}, {p.data.sources[0].num_frames} SynthRooms "
             f"frames x {p.train.epochs} epochs) with one change; `scratch` is the same transfer without "
             "pre-training.", "", "Commands:", "", *[f"- `{c}`" for c in commands], ""]
    for grid in GRIDS:
        if grid in AXES:
            continue  # their runs are rows of the "masking" table ("-": not run yet)
        if any(name in rows for name in GRIDS[grid]):
            lines += [f"## {grid}", "", table(grid, rows), ""]
    missing = [g for g in GRIDS if not any(name in rows for name in GRIDS[g])]
    if missing:
        lines += [f"Not run yet: {', '.join(missing)} (`python benchmarks/ablations.py --grid "
                  f"{','.join(missing)} --out <same folder>`).", ""]
    # The maintainers' reading of the tables (which defaults they chose) is written by hand and kept across runs.
    kept = report.read_text().split(DECISIONS, 1) if report.is_file() else []
    if len(kept) == 2:
        lines += [DECISIONS + kept[1].rstrip("\n"), ""]
    text = "\n".join(lines)
    write_text(report, text)
    return text


DECISIONS = "## Defaults chosen from these runs"


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=RECIPE, help=f"base recipe (default {RECIPE})")
    parser.add_argument("--grid", default=",".join(GRIDS), help=f"comma-separated subset of {', '.join(GRIDS)}")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variant names of those grids: run only these (a budget's choice)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "ablations"), help="runs folder; results accumulate")
    parser.add_argument("--report", default=str(ROOT / "docs" / "ablations.md"), help="markdown report to rewrite")
    parser.add_argument("--pretrain-only", action="store_true",
                        help="pre-train and record the pretext diagnostics only, no transfer runs")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate, run nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides of the base recipe")
    args = parser.parse_args(argv)

    cfg = load_config(CompareConfig, args.config, args.overrides)
    out = Path(args.out)
    store = out / "ablations.json"
    saved = yaml.safe_load(store.read_text()) if store.is_file() else {"rows": {}, "commands": []}
    rows: dict[str, dict] = saved["rows"]
    todo, alias = plan(cfg, args.grid.split(","), rows, transfer=not args.pretrain_only)
    if args.variants:
        wanted = args.variants.split(",")
        unknown = [v for v in wanted if v not in alias]
        if unknown:
            raise SystemExit(f"--variants {','.join(unknown)}: not in grid {args.grid}; choose from {', '.join(alias)}")
        todo = {name: overrides for name, overrides in todo.items() if name in wanted}
    scratch = SCRATCH not in rows and not args.pretrain_only
    stages = estimate_seconds(cfg, variants=todo, scratch=scratch, transfer=not args.pretrain_only)
    print(f"[ablations] {len(todo)} pre-training variants to run ({len(alias) - len(todo)} shared or done): "
          f"{', '.join(todo) or 'none'}", flush=True)
    print(f"[ablations] estimated wall time on the 2-core reference CPU: {format_estimate(stages)}", flush=True)
    if args.dry_run:
        return
    save_config(cfg, out / "ablation_config.yaml")
    saved["commands"].append(shlex.join(["python", "benchmarks/ablations.py",
                                         *(argv if argv is not None else sys.argv[1:])]))

    def keep(row: dict) -> None:
        """Store a finished variant at once: an interrupted invocation reruns only what it had not finished."""
        overrides = todo.get(row["backbone"], [])
        rows[row["backbone"]] = row | {"overrides": overrides, "pretrain_config": _identity(cfg, overrides),
                                       "pretrain_only": args.pretrain_only}
        for name, target in alias.items():
            if target != name and target in rows:
                rows[name] = {"alias": target, "overrides": GRIDS_OVERRIDES[name]}
        write_json(store, {"rows": rows, "commands": saved["commands"]})

    run_comparison(cfg, out, variants=todo, scratch=scratch, transfer=not args.pretrain_only,
                   log=lambda line: print(f"[ablations] {line}", flush=True), on_row=keep)
    print(write_report(rows, cfg, Path(args.report), saved["commands"]), flush=True)


if __name__ == "__main__":
    _main()
