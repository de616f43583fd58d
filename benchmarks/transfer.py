"""The evidence benchmark (issue 23): does Mask3D pre-training give a better colour backbone than MAE-RGB and than no
pre-training, and at what cost?

From one config (``mask3d_vit/configs/transfer_cpu.yaml``): pre-train a ViT-Tiny/16 at 96x128 (a 6x8 token grid)
for 3840 steps of 32 on 10,240 distinct SynthRooms frames (rendered once into ``<out>/frames``) as Mask3D (the
default design), Mask3D as the paper reads it, MAE-RGB at the same steps and MAE-RGB at equal pre-training compute,
plus MAE-RGB continued by Mask3D and by itself; from {scratch, those backbones} fine-tune segmentation on 100 %,
10 % and 1 % of the labelled frames (other scenes) and fit the closed-form frozen depth and segmentation probes
beside their image-blind floors (on the last block's tokens and, ``probe_layers``, on earlier blocks'), for 3 seeds;
fine-tune the supervised ceilings once. The positive control follows:
the same backbones at the first seed on headlamp frames (``camera_light``: colour carries depth), probes only. Where
``../shared/data`` exists, a real-frames section follows: the depth probe of every backbone fit on the real sample
frames and scored on SUN RGB-D val, and sim-to-real NYU13 segmentation of every 100 % model on the labelled NYUv2
frame. It rewrites ``docs/results.md`` (tables, paired differences with confidence intervals, PNG figures under
``docs/figures/``, the command, commits, hardware, wall time)::

    python benchmarks/transfer.py                      # ~200 min on 2 idle CPU cores (the estimate is printed first)
    python benchmarks/transfer.py --quick              # the same protocol at smoke size (a test runs it)
    python benchmarks/transfer.py --dry-run            # print the plan and the time estimate only
    python benchmarks/transfer.py --scale 10 workers=1 # 10x the frames and steps, for a GPU (docs/paper_scale.md)
    python benchmarks/transfer.py seeds=[0,1,2,3,4]    # any config key=value

Every run writes ``result.json`` (its metrics, the hardware it ran on, and the recipes it and the runs it starts from
ran) when it finishes: run the same command with the same ``--out`` again after an interruption and only what is
missing runs (a run whose recipe, or whose backbone's recipe, changed runs again), so the protocol may span
sittings. Every finished run's result is also kept in ``benchmarks/records/<config>`` (small JSON files committed
with the report; ``--records``): in a fresh checkout or on another machine the same command restores them into
``--out`` and runs only the rest. A restored pre-training has no weights there; it runs again only when a run still
to do starts from it (the real-frames rows of such backbones are left out instead).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mask3d_vit.checkpoint import list_checkpoints
from mask3d_vit.config import load_config, save_config, to_dict
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset, open_source, val_sources
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.engine.launch import exit_on_stop
from mask3d_vit.eval.dense import DenseEvaluator, EvalConfig, SegmentationScore
from mask3d_vit.extras import optional_import
from mask3d_vit.io import atomic_save, write_json, write_text
from mask3d_vit.models.vit import encoder_patch_size
from mask3d_vit.tasks.compare import (CEILING, EQUAL_COMPUTE_NAME, PAPER_DESIGN, PAPER_NAME, SCRATCH, CompareConfig,
                                      RunSpec, check_scenes, control_config, estimate_seconds, format_estimate, machine,
                                      materialize, objective_variants, plan_runs, pretrain_steps, run_comparison,
                                      probe_key, run_once, slug, summarize, transfer_key, variant_pretrain,
                                      _cached)
from mask3d_vit.tasks.finetune import load_dense_model
from mask3d_vit.viz.panels import pyplot

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPE = "transfer_cpu"
REFERENCE = "Mask3D"
CONTINUED = ("MAE-RGB → Mask3D", "MAE-RGB → MAE-RGB")  # the paired comparison of continued pre-training
# --quick: the whole protocol at smoke size (a micro ViT at 32x48, 2 seeds, a few steps per run): about a minute.
QUICK = ["seeds=[0,1]", "fractions=[1.0,0.5]", "seg_steps=[3,2]", "continue_steps=2", "ceiling_steps=3",
         "pretrain.train.epochs=2", "pretrain.train.eval_every=1", "control_epochs=1", "probe_layers=[0]"]
for _section in ("pretrain", "seg", "depth_probe", "seg_probe"):
    _seed = 0 if _section == "pretrain" else 100
    QUICK += [f"{_section}.data.sources=[{{format: synthrooms, num_frames: 16, seed: {_seed}}}]",
              f"{_section}.data.size=[32,48]"]
for _section in ("pretrain", "seg"):
    QUICK += [f"{_section}.model.encoder=vit_micro_patch16", f"{_section}.train.batch_size=8"]
for _section in ("depth_probe", "seg_probe"):
    QUICK += [f"{_section}.encoder=vit_micro_patch16", f"{_section}.batch_size=8", f"{_section}.max_images=8",
              f"{_section}.cells=4"]
QUICK += ["pretrain.model.decoder_dim=32", "pretrain.model.depth_dim=32", "pretrain.val_batches=1",
          "seg.model.neck_channels=16", "seg.model.head_channels=16", "seg.eval.max_images=8"]


def scaled(cfg: CompareConfig, scale: float) -> CompareConfig:
    """``cfg`` with ``scale`` x the SynthRooms frames of every run, of every capped evaluation and of every step count
    (pre-training epochs stay: each frame is still shown as often)."""
    def data(d: DataConfig) -> DataConfig:
        sources = [dataclasses.replace(s, num_frames=max(1, round(s.num_frames * scale)))
                   if s.format == "synthrooms" else s for s in d.sources]
        return dataclasses.replace(d, sources=sources)

    def probe(p):
        return dataclasses.replace(p, data=data(p.data), max_images=round(p.max_images * scale))

    seg = dataclasses.replace(cfg.seg, data=data(cfg.seg.data), eval=dataclasses.replace(
        cfg.seg.eval, max_images=round(cfg.seg.eval.max_images * scale)))
    return dataclasses.replace(
        cfg, pretrain=dataclasses.replace(cfg.pretrain, data=data(cfg.pretrain.data)), seg=seg,
        depth_probe=probe(cfg.depth_probe), seg_probe=probe(cfg.seg_probe),
        seg_steps=[round(n * scale) for n in cfg.seg_steps], continue_steps=round(cfg.continue_steps * scale),
        ceiling_steps=round(cfg.ceiling_steps * scale))


def real_sources(shared: Path) -> tuple[list[SourceConfig], list[SourceConfig]]:
    """(real frames the real-frames depth probe is fit on, SUN RGB-D val frames it is scored on)."""
    train = [SourceConfig(format="nyuv2", root=str(shared / "nyuv2_train_mini"), split="train"),
             SourceConfig(format="sunrgbd", root=str(shared / "sunrgbd_kv2_mini"), split="train")]
    return train, [SourceConfig(format="sunrgbd", root=str(shared / "sunrgbd_kv2_mini"), split="val")]


def frame_count(sources: list[SourceConfig]) -> int:
    return sum(len(open_source(s, split=None)) for s in sources)


@torch.no_grad()
def sim_to_real(seg_run: str | Path, shared: Path) -> dict[str, float]:
    """NYU13 segmentation scores of a SynthRooms-trained model on the labelled NYUv2 sample frames.

    SynthRooms labels use the NYU13 ids, so the model's classes and the NYUv2 ``nyu13`` labels line up one to one.
    """
    model, cfg, _ = load_dense_model(seg_run)
    data = DataConfig(sources=[SourceConfig(format="nyuv2", root=str(shared / "nyuv2_train_mini"), split="train",
                                            class_set="nyu13")], size=cfg.data.size)
    frames = build_dataset(data, split="val", train=False, require_labels=True)
    labelled = []
    for i in range(len(frames)):
        try:
            labelled.append(frames[i])
        except FileNotFoundError:  # the sample labels only some frames; the reader names the missing label map
            continue
    evaluator = DenseEvaluator(labelled, score=SegmentationScore(get_class_set("nyu13").names), task="seg",
                               cfg=EvalConfig(), device="cpu")
    return {k: v for k, v in evaluator(model).items() if "/" not in k} | {"frames": float(len(labelled))}


def cached_sim_to_real(seg_run: Path, shared: Path, folder: Path, log=print) -> dict[str, float]:
    """:func:`sim_to_real` of ``seg_run``, kept in ``folder/sim2real-<run>.json`` with the seg run's recorded recipe
    (its ``result.json``), so a protocol restored from records needs no weights for it; {} when it was never
    scored and the run's weights are absent."""
    cache = folder / f"sim2real-{seg_run.name}.json"
    recorded = {k: v for k, v in json.loads((seg_run / "result.json").read_text()).items()
                if k in ("config", "init", "needs")}
    if cache.is_file():
        kept = json.loads(cache.read_text())
        if kept.get("seg_run") == recorded:
            return kept["metrics"]
    if not list_checkpoints(seg_run):
        log(f"real frames: {seg_run} has no weights here (a restored record); its sim-to-real scores are left out")
        return {}
    metrics = sim_to_real(seg_run, shared)
    write_json(cache, {"metrics": metrics, "seg_run": recorded})
    return metrics


def restore_records(records: Path, out: Path) -> int:
    """Copy into ``out`` every run result kept in ``records`` (:func:`save_records`) that ``out`` lacks, with the
    recording run folder's path replaced by ``out``'s in each: a protocol continues in a fresh checkout or on
    another machine from the runs it finished. Each restored result is still checked against its recipe before it
    is used. Returns how many were restored."""
    index = records / "records.json"
    if not index.is_file():
        return 0
    recorded_out = json.loads(index.read_text())["out"]
    restored = 0
    for src in sorted(records.rglob("*.json")):
        if src == index:
            continue
        dst = out / src.relative_to(records)
        if not dst.exists():
            write_text(dst, src.read_text().replace(_json_str(recorded_out), _json_str(str(out))))
            restored += 1
    return restored


def save_records(out: Path, records: Path) -> int:
    """Keep every run result of ``out`` (``result.json``, sim-to-real scores) and its invocations' timing in
    ``records``: small JSON files to commit beside the report, from which :func:`restore_records` continues the
    protocol elsewhere. Returns how many files were written."""
    kept = [p for p in out.rglob("*.json") if p.name in ("result.json", "timing.json") or p.name.startswith(
        "sim2real-")]
    for src in kept:
        write_text(records / src.relative_to(out), src.read_text())
    write_json(records / "records.json", {"out": str(out)})
    return len(kept)


def _json_str(text: str) -> str:
    """``text`` as it appears inside a JSON string."""
    return json.dumps(text)[1:-1]


def run_transfer(out: str | Path, *, cfg: CompareConfig, shared: Path | None, log=print) -> dict:
    """The benchmark's protocol: the comparison, its positive control (``cfg.control_light``), then (when ``shared``
    is given) the real-frames experiment.

    Args:
        out: folder of every run (``<out>/control/`` for the control, ``<out>/real/`` for the real-frames probes).
        cfg: the comparison config.
        shared: the shared sample-data folder, or None to skip the real-frames experiment.
        log: progress lines go here.

    Returns:
        ``rows`` (one per backbone and seed, see :mod:`mask3d_vit.tasks.compare`), ``ceiling`` (the supervised
        row, or {}), ``summary`` of the rows, ``control_rows`` (the control's rows; empty without it),
        ``real_rows`` (one per backbone and seed with the real-frames probe and ``sim2real/<metric>``; empty
        without ``shared``) and ``minutes`` per part.
    """
    out = Path(out)
    check_scenes(cfg)
    t = time.time()
    rows = run_comparison(cfg, out, variants=objective_variants(cfg.objectives, cfg), log=log)
    write_json(out / "rows.json", {"rows": rows})
    ceiling = next((r for r in rows if r["backbone"] == CEILING), {})
    rows = [r for r in rows if r["backbone"] != CEILING]
    minutes = {"comparison": (time.time() - t) / 60}
    control, control_rows = control_config(cfg), []
    if control is not None:
        t = time.time()
        control_rows = run_comparison(control, out / "control", log=lambda line: log(f"control: {line}"),
                                      variants=objective_variants(control.objectives, control))
        minutes["control"] = (time.time() - t) / 60
    real_rows: list[dict] = []
    if shared is not None:
        t = time.time()
        real_rows = run_real_frames(out, rows, cfg=cfg, shared=shared, log=log)
        minutes["real_frames"] = (time.time() - t) / 60
    return {"rows": rows, "ceiling": ceiling, "summary": summarize(rows), "control_rows": control_rows,
            "real_rows": real_rows, "minutes": minutes}


def run_real_frames(out: Path, rows: list[dict], *, cfg: CompareConfig, shared: Path, log=print) -> list[dict]:
    """The real-frames experiment on the comparison's backbones (runs under ``<out>/real/``): per row, the depth
    probe fit on the real sample frames and scored on SUN RGB-D val, and the row's 100 % segmentation model scored
    on the labelled NYUv2 frame (``sim2real/<metric>``)."""
    train, held_out = real_sources(shared)
    probe = dataclasses.replace(cfg.depth_probe, max_images=0, data=dataclasses.replace(
        cfg.depth_probe.data, sources=train, val_sources=held_out))
    # The pre-training runs as the comparison planned them, so each probe's record holds its backbone's recipe.
    planned = materialize(cfg, out / "frames", log=log) if cfg.materialize else cfg
    pretrained = {str(u.run_dir): u for u in plan_runs(planned, out, objective_variants(cfg.objectives, cfg),
                                                       transfer=False)[0]}
    real_rows = []
    for row in rows:
        name, seed = row["backbone"], row["seed"]
        backbone = pretrained.get(row["pretrain_run"])
        spec = RunSpec("depth_probe", name, seed, out / "real" / f"depth_probe-{slug(name)}-s{seed}",
                       [backbone] if backbone else [], probe, row["pretrain_run"])
        if backbone and _cached(spec) is None and not list_checkpoints(backbone.run_dir):
            # Its pre-training finished in another sitting whose folder is gone (restored from records): the
            # section covers the rows whose weights are here rather than pre-training them again.
            log(f"real frames: {name}, seed {seed}: its weights are not here (a restored record); row left out")
            continue
        done = run_once(spec, lambda line: log(f"real frames: {line}"))
        real = {"backbone": name, "seed": seed, "machines": [done.get("machine", "not recorded")], **done["metrics"]}
        if "seg_run" in row:
            real.update({f"sim2real/{k}": v for k, v in cached_sim_to_real(Path(row["seg_run"]), shared,
                                                                          out / "real", log).items()})
        real_rows.append(real)
    return real_rows


# ---------------------------------------------------------------------------------------------------- the report
LOWER_IS_BETTER = ("abs_rel", "rmse", "log10")


def seg_columns(cfg: CompareConfig) -> list[tuple[str, str, int]]:
    """(row key, header, decimals) of the fine-tuning table: seg mIoU per labelled fraction, then pixel accuracy."""
    return [(f"{transfer_key('seg', f)}/miou", f"seg mIoU, {f * 100:g} % labels", 1) for f in cfg.fractions] + [
        ("seg/pixel_acc", "pixel acc, 100 %", 1)]


PROBE_COLUMNS = [("depth_probe/abs_rel", "depth AbsRel", 3), ("depth_probe/delta1", "depth delta1", 1),
                 ("depth_probe/delta1_med", "depth delta1 (median-scaled)", 1), ("seg_probe/miou", "seg mIoU", 1),
                 ("seg_probe/pixel_acc", "seg pixel acc", 1)]
def layer_columns(layer: int) -> list[tuple[str, str, int]]:
    """:data:`PROBE_COLUMNS` of the probes of block ``layer``."""
    return [(f"{probe_key(key.split('_probe/')[0], layer)}/{key.split('/')[1]}", f"{header}, block {layer}", decimals)
            for key, header, decimals in PROBE_COLUMNS]


DIAGNOSTIC_COLUMNS = [("pretrain/rgb_reliance", "rgb_reliance", 3),
                      ("pretrain/vs_interpolation", "vs_interpolation", 2),
                      ("pretrain/loss_depth_hidden", "depth loss (hidden patches)", 3),
                      ("pretrain/loss_rgb", "colour loss", 3)]


TRAIN_MIN = "pretrain/train_min"  # minutes of a pre-training's steps, from its log (compare.run_comparison)


def time_share(rows: list[dict], name: str, ref: str) -> tuple[float, list[float]] | None:
    """``name``'s pre-training minutes over ``ref``'s, per seed both have (seed order), and their mean; or None."""
    by = {(r["backbone"], r["seed"]): r.get(TRAIN_MIN) for r in rows}
    shares = [by[(name, s)] / by[(ref, s)] for (n, s) in by if n == name and by[(name, s)] and by.get((ref, s))]
    return (float(np.mean(shares)), shares) if shares else None


def _mean_std(entry: dict, key: str, decimals: int) -> str:
    if key not in entry:
        return "-"
    mean, std = entry[key]
    return f"{mean:.{decimals}f}" + ("" if math.isnan(std) else f" ± {std:.{decimals}f}")


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (exact, any ``df`` >= 1)."""
    stats = optional_import("scipy.stats", "The report's confidence intervals (benchmarks/transfer.py)")
    return float(stats.t.ppf(0.975, df))


def interval(values: list[float]) -> tuple[float, float, int]:
    """(mean, 95 % half-width of the mean by Student's t, n); the half-width is NaN for a single value."""
    d = np.array(values, dtype=np.float64)
    half = t95(len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    return float(d.mean()), float(half), len(d)


def paired(rows: list[dict], ref: str, other: str, key: str) -> tuple[float, float, int] | None:
    """Per-seed differences ``ref - other`` of ``key`` over the seeds both have: :func:`interval` of them, or None
    when no seed has both."""
    by = {(r["backbone"], r["seed"]): r for r in rows}
    diffs = [by[(ref, s)][key] - by[(other, s)][key] for (name, s) in by
             if name == ref and (other, s) in by and key in by[(ref, s)] and key in by[(other, s)]]
    return interval(diffs) if diffs else None


def call(diff: tuple[float, float, int], key: str) -> str:
    """better / worse when the 95 % interval of the paired difference excludes 0, else within noise."""
    mean, half, _ = diff
    if math.isnan(half):
        return "one seed: untested"
    if abs(mean) <= half:
        return "within noise"
    return "better" if (mean < 0) == (key.split("/")[-1] in LOWER_IS_BETTER) else "worse"


def comparisons(names: list[str]) -> list[tuple[str, str]]:
    """(reference, baseline) pairs of the report: Mask3D against every other first-stage backbone, and the two
    continued backbones against each other."""
    pairs = [(REFERENCE, n) for n in names if n != REFERENCE and n not in CONTINUED]
    return pairs + ([CONTINUED] if all(n in names for n in CONTINUED) else [])


def paired_table(rows: list[dict], pairs: list[tuple[str, str]], columns: list[tuple[str, str, int]]) -> str:
    lines = ["| metric | " + " | ".join(f"{a} − {b}" for a, b in pairs) + " |", "|---|" + "---|" * len(pairs)]
    for key, header, decimals in columns:
        cells = []
        for a, b in pairs:
            d = paired(rows, a, b, key)
            cells.append("-" if d is None else f"{d[0]:+.{decimals + 1}f} ± {d[1]:.{decimals + 1}f} ({call(d, key)})")
        lines.append(f"| {header} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_table(summary: list[dict], columns: list[tuple[str, str, int]], extra: list[tuple[str, dict]] = ()
                 ) -> str:
    """Backbones (mean ± std over seeds), then the reference rows ``extra`` (name, {key: value})."""
    lines = ["| backbone | seeds | " + " | ".join(h for _, h, _ in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for e in summary:
        lines.append(f"| {e['backbone']} | {e['seeds']} | " + " | ".join(_mean_std(e, k, d) for k, _, d in columns)
                     + " |")
    for name, values in extra:
        cells = [f"{values[k]:.{d}f}" if k in values else "-" for k, _, d in columns]
        lines.append(f"| *{name}* | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(rows: list[dict], columns: list[tuple[str, str, int]]) -> str:
    lines = ["| backbone | seed | " + " | ".join(h for _, h, _ in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = " | ".join(f"{r[k]:.{d}f}" if k in r else "-" for k, _, d in columns)
        lines.append(f"| {r['backbone']} | {r['seed']} | {cells} |")
    return "\n".join(lines)


def floors(rows: list[dict], probe: str, metric_keys: list[str], as_key=lambda k: k) -> list[tuple[str, dict]]:
    """The image-blind floors of ``probe`` (the same for every backbone: the first row that has them) as reference
    rows; ``as_key`` maps a metric name to the table column it stands under."""
    row = next((r for r in rows if f"{probe}_floor/position/{metric_keys[0]}" in r), None)
    if row is None:
        return []
    return [(f"floor: {title} ({probe.replace('_', ' ')})",
             {as_key(m): row[f"{probe}_floor/{kind}/{m}"] for m in metric_keys if f"{probe}_floor/{kind}/{m}" in row})
            for kind, title in (("position", "position-only"), ("constant", "constant"))]


# A probe beats a floor only when it does on every one of these metrics (issue 23): a depth probe that wins on
# AbsRel by getting the scale right but loses on delta1 or on the median-scaled shape has not beaten it.
FLOOR_RULE = {"depth_probe": ("abs_rel", "delta1", "delta1_med"), "seg_probe": ("miou", "pixel_acc")}


def probe_floors(rows: list[dict], layer: int = -1) -> list[tuple[str, dict]]:
    """The floors of the depth and seg probes of block ``layer`` as reference rows under their probe columns."""
    return [ref for task, metrics in FLOOR_RULE.items() for ref in floors(
        rows, probe_key(task.removesuffix("_probe"), layer), list(metrics),
        as_key=lambda m, key=probe_key(task.removesuffix("_probe"), layer): f"{key}/{m}")]


def floor_wins(rows: list[dict], name: str, probe: str, kind: str, metrics: Sequence[str]) -> tuple[list[str], int]:
    """The metrics (of ``metrics``) on which backbone ``name``'s ``probe`` beats its ``kind`` floor, and its seeds:
    the 95 % interval over seeds of score minus floor lies on the better side of zero (one seed: the score does)."""
    ref = next(r for r in rows if f"{probe}_floor/{kind}/{metrics[0]}" in r)
    wins, n = [], 0
    for m in metrics:
        d = interval([r[f"{probe}/{m}"] - ref[f"{probe}_floor/{kind}/{m}"] for r in rows
                      if r["backbone"] == name and f"{probe}/{m}" in r])
        n = d[2]
        if call(d if n > 1 else (d[0], 0.0, 1), m) == "better":
            wins.append(m)
    return wins, n


def floor_findings(rows: list[dict], ceiling: dict, layer: int = -1) -> list[str]:
    """Which backbones' probes (of block ``layer``, -1 = the last) beat each image-blind floor, one line per probe
    and floor, and the ceilings.

    A backbone beats a floor when, on every metric of :data:`FLOOR_RULE`, the 95 % interval over seeds of its
    probe's score minus the floor's lies on the better side of zero (one seed: its score does; no interval).
    """
    names = list(dict.fromkeys(r["backbone"] for r in rows))
    lines = []
    for base, metrics in FLOOR_RULE.items():
        probe = probe_key(base.removesuffix("_probe"), layer)
        titles = {f"{probe}/{key.split('/')[1]}": title for key, title, _ in PROBE_COLUMNS}
        ref = next((r for r in rows if f"{probe}_floor/position/{metrics[0]}" in r), None)
        if ref is None:
            continue
        what = ("Depth probe" if base == "depth_probe" else "Segmentation probe") + (
            "" if layer == -1 else f" of block {layer}")
        for kind, title in (("position", "position-only"), ("constant", "constant")):
            floor = {m: ref[f"{probe}_floor/{kind}/{m}"] for m in metrics}
            beaten, short, single = [], [], False
            for name in names:
                won, seeds = floor_wins(rows, name, probe, kind, metrics)
                single |= seeds == 1
                wins = [titles[f"{probe}/{m}"] for m in won]
                (beaten if len(wins) == len(metrics) else short).append((name, wins))
            lines.append(
                f"- {what} against its {title} floor ("
                + ", ".join(f"{titles[f'{probe}/{m}']} {floor[m]:.3g}" for m in metrics) + "): "
                + (f"beaten on all {len(metrics)} metrics by {', '.join(n for n, _ in beaten)}" if beaten else
                   "beaten by no backbone on all its metrics")
                + ("; not by " + ", ".join(f"{n} ({', '.join(w) if w else 'none'} better)" for n, w in short)
                   if short else "") + (" (one seed: no interval)." if single else "."))
        task = "depth" if base == "depth_probe" else "seg"
        top = [f"{titles[f'{probe}/{m}']} {ceiling[f'{task}_ceiling/{m}']:.3g}" for m in metrics
               if layer == -1 and f"{task}_ceiling/{m}" in ceiling]  # the ceiling is a fine-tuning, of no block
        if top:
            lines.append(f"- {what}'s supervised ceiling: {', '.join(top)}.")
    return lines


def expected_outcome(rows: list[dict], cfg: CompareConfig) -> list[str]:
    """Issue 23's expected outcome, part by part, as this run's paired differences and floors decide it: the default
    Mask3D's depth probe (of the last block, then of ``cfg.probe_layers``) beats MAE-RGB at equal compute and the
    position-only floor on every depth metric, and its segmentation at the fewest labels beats scratch and MAE-RGB."""
    names = {r["backbone"] for r in rows}
    titles = dict((k.split("/")[1], t) for k, t, _ in PROBE_COLUMNS)

    def verdict(won: list[str], metrics: Sequence[str]) -> str:
        shown = ", ".join(titles.get(m, m) for m in won) or "none"
        return "**yes**" if len(won) == len(metrics) else f"**no** (better on {shown} of {len(metrics)})"

    def better(other: str, key: str) -> bool:
        d = paired(rows, REFERENCE, other, key)
        return d is not None and call(d, key) == "better"

    if REFERENCE not in names:
        return []
    lines, depth = [], FLOOR_RULE["depth_probe"]
    for layer in [-1, *cfg.probe_layers]:
        probe = probe_key("depth", layer)
        if not any(f"{probe}/{depth[0]}" in r for r in rows):
            continue
        where = "" if layer == -1 else f" of block {layer}"
        parts = []
        if EQUAL_COMPUTE_NAME in names:
            won = [m for m in depth if better(EQUAL_COMPUTE_NAME, f"{probe}/{m}")]
            parts.append(f"beats {EQUAL_COMPUTE_NAME}: {verdict(won, depth)}")
        won = floor_wins(rows, REFERENCE, probe, "position", depth)[0]
        parts.append(f"beats the position-only floor: {verdict(won, depth)}")
        lines.append(f"- Mask3D's depth probe{where}, on all {len(depth)} depth metrics, " + "; ".join(parts) + ".")
    fewest = min(cfg.fractions)
    key = f"{transfer_key('seg', fewest)}/miou"
    for other in (SCRATCH, "MAE-RGB"):
        if other in names and any(key in r for r in rows):
            lines.append(f"- Mask3D's segmentation at {fewest * 100:g} % labels beats {other}: "
                         + ("**yes**." if better(other, key) else "**no**."))
    return ["Issue 23's expected outcome, decided by the intervals above:", "", *lines, ""] if lines else []


def bar_figure(summary: list[dict], rows: list[dict], columns: list[tuple[str, str, int]], path: Path,
               references: list[tuple[str, dict]] = ()) -> Path:
    """One panel per metric: mean over seeds as bars, standard deviation as error bars, each seed as a dot, and the
    ``references`` (floors, ceiling) as labelled horizontal lines."""
    plt = pyplot()
    names = [e["backbone"] for e in summary]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 3.6), squeeze=False)
    styles = ["--", ":", "-."]
    for ax, (key, header, _) in zip(axes[0], columns):
        means = [e[key][0] if key in e else math.nan for e in summary]
        stds = [0.0 if key not in e or math.isnan(e[key][1]) else e[key][1] for e in summary]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#8fb3d9")
        for i, name in enumerate(names):
            values = [r[key] for r in rows if r["backbone"] == name and key in r]
            ax.plot([i] * len(values), values, "k.", markersize=4)
        for (label, values), style in zip(references, styles):
            if key in values:
                ax.axhline(values[key], color="#c0392b", linestyle=style, linewidth=1, label=label)
        if any(key in v for _, v in references):
            ax.legend(fontsize=6, loc="best")
        finite = [m for m in means if not math.isnan(m)] + [v[key] for _, v in references if key in v]
        if finite:
            lo, hi = min(finite), max(finite)
            pad = 0.15 * (hi - lo) + 1e-6
            ax.set_ylim(lo - pad if lo - pad > 0 else 0, hi + pad)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(header, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def efficiency_figure(summary: list[dict], fractions: list[float], path: Path,
                      references: list[tuple[str, float]] = ()) -> Path:
    """Segmentation mIoU against the fraction of labelled frames, one line per backbone (error bars: std)."""
    plt = pyplot()
    xs = sorted(fractions)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for e in summary:
        points = [(x * 100, e[f"{transfer_key('seg', x)}/miou"]) for x in xs if f"{transfer_key('seg', x)}/miou" in e]
        ax.errorbar([p[0] for p in points], [p[1][0] for p in points],
                    yerr=[0.0 if math.isnan(p[1][1]) else p[1][1] for p in points], marker="o", capsize=3,
                    label=e["backbone"])
    for (label, value), style in zip(references, ["--", ":"]):
        ax.axhline(value, color="#c0392b", linestyle=style, linewidth=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("labelled frames used (%)")
    ax.set_ylabel("seg mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def reconstruction_figures(rows: list[dict], figures: Path) -> list[tuple[str, Path]]:
    """The last reconstruction figure (predicted and true depth on one colour scale) of the first seed's run of
    every backbone that predicts depth, copied beside the report."""
    first = min((r["seed"] for r in rows), default=0)
    found = []
    for r in rows:
        pngs = sorted((Path(r["pretrain_run"]) / "figures").glob("*.png")) if r["seed"] == first and r[
            "pretrain_run"] and "pretrain/rgb_reliance" in r else []
        if pngs:
            target = figures / f"transfer_reconstruction_{slug(r['backbone'])}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pngs[-1], target)
            found.append((r["backbone"], target))
    return found


def commit() -> str:
    """The checked-out commit (with ``+changes`` when the work tree differs from it), or "unknown"."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + (" +changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


REAL_COLUMNS = [("depth_probe/abs_rel", "probe AbsRel (SUN RGB-D val)", 3), ("depth_probe/delta1", "probe delta1", 1),
                ("depth_probe/delta1_med", "probe delta1 (median-scaled)", 1),
                ("sim2real/miou", "sim-to-real mIoU (NYUv2)", 1), ("sim2real/pixel_acc", "sim-to-real pixel acc", 1)]
REAL_HEADING = "## Real frames (small numbers)"


def write_report(result: dict, cfg: CompareConfig, *, command: str, out: Path, report: Path, estimate: str,
                 real_note: str, timing: list[dict] = ()) -> str:
    """Write ``report`` (markdown) with its figures beside it under ``figures/``; returns the markdown.

    Args:
        result: :func:`run_transfer`'s output.
        cfg: the comparison config.
        command, estimate, real_note: shown as they are.
        out: the protocol's run folder.
        report: the markdown file (its real-frames section is kept when ``result`` has no real rows).
        timing: one ``{"command", "commit", "minutes", "started"}`` per invocation of the protocol on ``out``.
    """
    rows, summary, ceiling = result["rows"], result["summary"], result["ceiling"]
    # The docs name the run folder relative to the repository; one outside it is this machine's and reads <out>.
    resolved = out.resolve()
    shown = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else "<out>"
    outside = "" if shown != "<out>" else "`<out>`: the run folder it was given, outside the repository; "
    seg_cols, figures = seg_columns(cfg), report.parent / "figures"
    seg_floor = floors(rows, "seg_probe", ["miou", "pixel_acc"],
                       as_key=lambda m: "seg/pixel_acc" if m == "pixel_acc" else f"{transfer_key('seg', 1.0)}/miou")
    seg_floor = [(name, {**v, **{f"{transfer_key('seg', f)}/miou": v.get("seg/miou") for f in cfg.fractions
                                 if "seg/miou" in v}}) for name, v in seg_floor]
    steps = cfg.ceiling_steps
    seg_ceiling = [(f"ceiling: supervised, {steps} steps on all labelled frames",
                    {**{f"{transfer_key('seg', f)}/miou": ceiling["seg_ceiling/miou"] for f in cfg.fractions},
                     "seg/pixel_acc": ceiling["seg_ceiling/pixel_acc"]})] if "seg_ceiling/miou" in ceiling else []
    probe_refs = probe_floors(rows)
    probe_ceiling = ({f"depth_probe/{m}": ceiling[f"depth_ceiling/{m}"] for m in ("abs_rel", "delta1", "delta1_med")
                      if f"depth_ceiling/{m}" in ceiling}
                     | {f"seg_probe/{m}": ceiling[f"seg_ceiling/{m}"] for m in ("miou", "pixel_acc")
                        if f"seg_ceiling/{m}" in ceiling})
    probe_refs += [(f"ceiling: supervised fine-tuning, {steps} steps", probe_ceiling)] if probe_ceiling else []
    names = [e["backbone"] for e in summary]
    pairs = comparisons(names)
    full = f"{transfer_key('seg', 1.0)}/miou"
    effic_refs = [(name.split(" (")[0], v[full]) for name, v in seg_floor[:1] + seg_ceiling if full in v]
    bars = bar_figure(summary, rows, seg_cols[:-1], figures / "transfer_segmentation.png", seg_floor[:1] + seg_ceiling)
    effic = efficiency_figure(summary, cfg.fractions, figures / "transfer_data_efficiency.png", effic_refs)
    probes = bar_figure(summary, rows, PROBE_COLUMNS, figures / "transfer_probes.png",
                        [r for r in probe_refs if not r[0].startswith("floor: constant")])
    recon = reconstruction_figures(rows, figures)
    p = cfg.pretrain
    patch = encoder_patch_size(p.model.encoder)
    pretrain_frames = sum(s.num_frames for s in p.data.sources)
    labelled = sum(s.num_frames for s in cfg.seg.data.sources)
    variants = objective_variants(cfg.objectives, cfg)
    wall = sum(t["minutes"] for t in timing)
    cpu_minutes = sum(r.get(k, 0.0) for r in rows + [ceiling] + result["control_rows"] for k in r
                      if k.endswith("_s")) / 60
    headline = PROBE_COLUMNS + seg_cols[:-1]
    mask3d_pairs = [pair for pair in pairs if pair != CONTINUED]
    cost = "; ".join(f"{e['backbone']} " + (_mean_std(e, TRAIN_MIN, 1) if TRAIN_MIN in e else
                                             f"{e['pretrain_s'][0] / 60:.1f}") for e in summary
                     if e["backbone"] != SCRATCH)
    share = time_share(rows, EQUAL_COMPUTE_NAME, REFERENCE)
    probe_seeds = (f"fit on SynthRooms seed {', '.join(str(x.seed) for x in cfg.depth_probe.data.sources)}, scored "
                   f"on seed {', '.join(str(x.seed) for x in val_sources(cfg.depth_probe.data))}")
    lines = [
        "# Results: Mask3D against its baselines (issue 23)", "",
        f"Written by `benchmarks/transfer.py` on {time.strftime('%Y-%m-%d %H:%M')} from the runs in `{out}`. These "
        "are the numbers this run produced, favourable or not; every difference is read against the seed-to-seed "
        "spread, and every metric stands beside what a predictor that never looks at the image scores.", "",
        "## What this run shows", "",
        "Does Mask3D pre-training (the default design) give a better colour backbone than no pre-training, than "
        "MAE-RGB at the same steps, than MAE-RGB given the same pre-training compute, and than Mask3D as the paper "
        "reads it? Paired by seed (the same seed sets initialisation, masks and data order of both backbones); ± is "
        "the half-width of the 95 % confidence interval of the mean difference (Student's t, exact quantile); "
        "*better* / *worse* when that interval excludes zero, *within noise* otherwise. Made on: "
        f"{made_on(rows + ([ceiling] if ceiling else []))}.", "",
        paired_table(rows, mask3d_pairs, headline), "",
        *([f"Continued pre-training ({cfg.continue_steps} more steps from each seed's MAE-RGB backbone):", "",
           paired_table(rows, [CONTINUED], headline), ""] if CONTINUED in pairs else []),
        "Probes against their image-blind floors, on scenes used neither in pre-training nor in fitting the probe "
        f"({probe_seeds}; pre-training seed {', '.join(str(x.seed) for x in p.data.sources)}):", "",
        *floor_findings(rows, ceiling), "", *expected_outcome(rows, cfg),
        "Cost: minutes of pre-training steps per run (from each run's log, so a run resumed across sittings counts "
        f"whole; one worker thread; mean ± std over seeds): {cost}.", "",
        "## How they were made", "",
        f"- Command: `{command}` ({outside}resolved config: `{out / 'transfer_config.yaml'}`; every run directory "
        f"under `{out}` holds its own `config.yaml` and `result.json`, with the hardware it ran on). "
        f"{cfg.workers} worker process(es). Each section names the hardware its runs ran on.",
        f"- Wall time: {wall:.1f} min over {len(timing)} invocation(s) (predicted for the whole protocol: "
        f"{estimate}); the runs themselves took {cpu_minutes:.0f} worker-minutes. Invocations: "
        + "; ".join(f"`{t.get('command', command)}` at commit {t['commit']} on {t.get('machine', 'unrecorded')}, "
                    f"started {t['started']}, {t['minutes']:.1f} min{', stopped' if t.get('stopped') else ''}"
                    for t in timing) + ".",
        f"- Pre-training: {p.model.encoder} at {p.data.size[0]}x{p.data.size[1]} "
        f"({p.data.size[0] // patch}x{p.data.size[1] // patch} tokens; "
        "why this grid: docs/benchmarks.md, \"Token grid\") on "
        f"{pretrain_frames:,} distinct SynthRooms frames (scene seed {p.data.sources[0].seed}), "
        f"{p.train.epochs} epoch(s) of batch {p.train.batch_size} = {pretrain_steps(p)} steps. "
        f"Mask3D is the default design (colour mask {p.model.rgb_mask_ratio}, depth mask "
        f"{p.model.depth_mask_ratio}, loss on {p.model.loss_region}, depth prior {p.model.depth_prior}); "
        + (f"{PAPER_NAME} is the `Mask3D` constructor's design ({', '.join(PAPER_DESIGN[1:])}), same steps; "
           if PAPER_NAME in variants else "")
        + "MAE-RGB hides 0.75 of the colour and reconstructs it, same steps"
        + (f"; {EQUAL_COMPUTE_NAME} is MAE-RGB for {cfg.compute_ratio}x the steps "
           f"({pretrain_steps(variant_pretrain(cfg, variants[EQUAL_COMPUTE_NAME]))}): a step of the default design "
           f"costs {cfg.compute_ratio} MAE steps in wall time on one idle thread of the reference CPU "
           "(docs/benchmarks.md, \"Token grid\"), where both spend the same pre-training time"
           + (f"; in this run's logs it trained for {share[0]:.2f} of Mask3D's time (per seed: "
              f"{', '.join(f'{x:.2f}' for x in share[1])})" if share else "")
           if EQUAL_COMPUTE_NAME in variants else "") + ".",
        f"- Continued pre-training: from each seed's MAE-RGB backbone, {cfg.continue_steps} more steps of Mask3D "
        f"(`--init-from`), against {cfg.continue_steps} more steps of MAE-RGB, on the same frames. Only the encoder "
        "is carried over, as from an ImageNet MAE checkpoint: both continued runs start a new decoder."
        if cfg.continued else "- No continued pre-training.",
        f"- Segmentation: UperNet fine-tuned on {labelled:,} labelled SynthRooms frames of other scenes (seed "
        f"{cfg.seg.data.sources[0].seed}) and on " + ", ".join(f"{f * 100:g} %" for f in cfg.fractions if f < 1)
        + " of them"
        + (f", for {', '.join(str(n) for n in cfg.seg_steps)} steps of batch {cfg.seg.train.batch_size}"
           if cfg.seg_steps else "") + f"; scored on {cfg.seg.eval.max_images} frames of unseen scenes (NYU13 "
        "classes, percent).",
        f"- Frozen probes: the closed-form ridge probes (log depth; one-hot classes) on the final features, "
        f"{probe_seeds} ({sum(s.num_frames for s in cfg.depth_probe.data.sources)} fit frames, "
        f"{cfg.depth_probe.max_images} scored). Their floors are fit on the same frames without the image "
        "(position-only: a per-pixel mean; constant); the ceiling is the same encoder fine-tuned supervised "
        f"from scratch for {steps} steps on all {labelled:,} labelled frames (first seed).",
        f"- Seeds {cfg.seeds} set `train.seed` of every run; the scenes and the labelled subsets are the same for "
        "every seed.", "",
        "## Segmentation fine-tuning (mean ± standard deviation over seeds)", "",
        metric_table(summary, seg_cols, seg_floor + seg_ceiling), "",
        "The floor rows are the segmentation probe's image-blind predictors on the same scored frames.", "",
        f"![segmentation](figures/{bars.name})", "", f"![data efficiency](figures/{effic.name})", "",
        "## Frozen probes (mean ± standard deviation over seeds)", "",
        metric_table(summary, PROBE_COLUMNS, probe_refs), "",
        "Depth: AbsRel (lower is better), delta1 = % of pixels within 1.25x of the truth; the median-scaled delta1 "
        "rescales each prediction to the truth's median first, so it scores the shape of the depth map without its "
        "scale.", "", f"![probes](figures/{probes.name})", "",
        *layer_section(rows, cfg, mask3d_pairs), *control_section(result["control_rows"], cfg),
        "## Pre-training diagnostics and time", "",
        "`rgb_reliance`: the depth loss on hidden patches with the colour of another image, over the loss with the "
        "true colour (1 = colour ignored); `vs_interpolation`: the model's loss over that of interpolating the "
        "visible depth patches (< 1 = better than interpolation). Measured on the pre-training validation frames at "
        "the end of each run; MAE-RGB predicts no depth, so it has none.", "",
        metric_table([e for e in summary if e["backbone"] != SCRATCH],
                     DIAGNOSTIC_COLUMNS + [(TRAIN_MIN, "pre-training steps (min)", 1)]), "",
        *[f"![reconstruction {name}](figures/{path.name})" for name, path in recon], "",
        "### Every seed", "", seed_table(rows, seg_cols + PROBE_COLUMNS + DIAGNOSTIC_COLUMNS[:2]), "",
    ]
    kept = _split_report(report)[1] if not result["real_rows"] and report.is_file() else None
    text = "\n".join(lines + ([kept] if kept else real_section(result["real_rows"], real_note)))
    text = text.replace(str(resolved), shown).replace(str(out), shown)
    write_text(report, text)
    write_json(out / "results.json", {**result, "command": command, "timing": list(timing)})
    return text


def layer_section(rows: list[dict], cfg: CompareConfig, pairs: list[tuple[str, str]]) -> list[str]:
    """The probes of the earlier blocks (``cfg.probe_layers``): per backbone, paired, and against the floors."""
    if not cfg.probe_layers:
        return []
    columns = [c for layer in cfg.probe_layers for c in layer_columns(layer)]
    merged: dict[str, dict] = {}
    for layer in cfg.probe_layers:  # the floors do not look at the image: one row per floor, under every block
        for name, values in probe_floors(rows, layer):
            merged.setdefault(name.replace(f"@block{layer}", ""), {}).update(values)
    blocks = ", ".join(str(k) for k in cfg.probe_layers)
    return [
        "## Frozen probes of earlier blocks", "",
        f"The same probes on the tokens of block(s) {blocks} (0-based) through the encoder's final norm, beside "
        "the last block's above: a backbone whose knowledge sits before its last blocks (which specialise to the "
        "pre-training decoder) shows it here. Mean ± standard deviation over seeds, then the paired differences.",
        "", metric_table(summarize(rows), columns, list(merged.items())), "",
        paired_table(rows, pairs, columns), "",
        *[line for layer in cfg.probe_layers for line in floor_findings(rows, {}, layer)], "",
    ]


def made_on(rows: list[dict]) -> str:
    """The hardware the runs of ``rows`` ran on (``machines`` of each row)."""
    return "; ".join(sorted({m for r in rows for m in r.get("machines", [])})) or "not recorded"


def control_section(rows: list[dict], cfg: CompareConfig) -> list[str]:
    """The positive control: its probes beside their floors, the floor verdicts and the pretext diagnostics."""
    control = control_config(cfg)
    if not rows or control is None:
        return []
    summary = summarize(rows)
    refs = probe_floors(rows)
    return [
        "## Positive control: headlamp frames", "",
        f"The same backbones at seed {control.seeds[0]}, pre-trained and probed on SynthRooms frames lit by a "
        f"headlamp (`camera_light: {cfg.control_light:g}`: brightness falls with distance, so colour is known to "
        f"carry depth) for {pretrain_steps(control.pretrain)} steps ({control.continue_steps} continued), the same "
        "frame counts and probes. Where the answer is known, the instrument should respond: the depth probe of a "
        f"backbone that learnt depth from colour beats its floors here. Made on: {made_on(rows)}.", "",
        metric_table(summary, PROBE_COLUMNS, refs), "", *floor_findings(rows, {}), "",
        metric_table([e for e in summary if e["backbone"] != SCRATCH], DIAGNOSTIC_COLUMNS[:2]), "",
    ]


def real_section(real_rows: list[dict], note: str) -> list[str]:
    if not real_rows:
        return [REAL_HEADING, "", note, ""]
    summary = summarize(real_rows)
    return [REAL_HEADING, "", f"{note} Made on: {made_on(real_rows)}.", "", metric_table(summary, REAL_COLUMNS, floors(
        real_rows, "depth_probe", ["abs_rel", "delta1", "delta1_med"], as_key=lambda m: f"depth_probe/{m}")), ""]


def _split_report(report: Path) -> tuple[str, str | None]:
    """An existing report as (the comparison, its real-frames section or None)."""
    head, *section = report.read_text().split(REAL_HEADING, 1)
    return head.rstrip("\n"), REAL_HEADING + section[0].rstrip("\n") + "\n" if section else None


REAL_NOTE = ("The same backbones (SynthRooms pre-training only), on {frames} real frames: the depth probe is fit on "
             "the NYUv2 and SUN RGB-D Kinect v2 samples of `../shared/data` and scored on the 15 SUN RGB-D val "
             "frames; each 100 % segmentation model is scored sim-to-real on the one labelled NYUv2 frame (NYU13). "
             "A handful of frames: these numbers say whether the backbones carry anything to real data, not how "
             "well the method does there.")


def protocol_estimate(cfg: CompareConfig) -> dict[str, float]:
    """Predicted wall time of :func:`run_transfer` on the 2-core reference CPU: the comparison and its control, per
    stage (the real-frames part, a few dozen frames per backbone, is left out)."""
    stages = estimate_seconds(cfg, variants=objective_variants(cfg.objectives, cfg))
    control = control_config(cfg)
    if control is not None:
        extra = estimate_seconds(control, variants=objective_variants(control.objectives, control))
        stages = {k: v + extra[k] for k, v in stages.items()}
    return stages


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=RECIPE, help=f"comparison recipe (default {RECIPE})")
    parser.add_argument("--out", default=None, help="folder of the runs (default runs/transfer-<time>); an existing "
                                                   "protocol folder is continued")
    parser.add_argument("--report", default=str(ROOT / "docs" / "results.md"), help="markdown report to rewrite")
    parser.add_argument("--quick", action="store_true", help="the protocol at smoke size (about a minute)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every frame and step count (GPU: 10); key=value overrides apply after it")
    parser.add_argument("--real", choices=("auto", "on", "off"), default="auto",
                        help="the real-frames experiment: auto = when ../shared/data exists; when it is not run, "
                             "the report keeps the section it already has")
    parser.add_argument("--shared", default=str(SHARED), help="the shared sample-data folder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate, run nothing")
    parser.add_argument("--records", default=None,
                        help="folder that keeps every finished run's result (JSON, committed with the report) and "
                             "restores them into --out, so the protocol continues in a fresh checkout or on another "
                             "machine; default benchmarks/records/<config>[-x<scale>] ('' for none; none with "
                             "--quick)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seeds=[0,1]")
    args = parser.parse_args(argv)
    t95(1)  # the report's intervals need scipy: say so now, not after the protocol has run

    # Overrides apply after --scale: `--scale 10 seg_steps=[200,100,50]` runs those steps.
    cfg = scaled(load_config(CompareConfig, args.config, QUICK if args.quick else []), args.scale)
    cfg = load_config(CompareConfig, None, args.overrides, base=to_dict(cfg))
    shared = Path(args.shared)
    if args.real == "on" and not shared.is_dir():
        raise SystemExit(f"--real on: {shared} does not exist")
    shared = shared if args.real != "off" and shared.is_dir() else None
    estimate = format_estimate(protocol_estimate(cfg))
    variants = objective_variants(cfg.objectives, cfg)
    print(f"[transfer] backbones: scratch, {', '.join(variants)} x {len(cfg.seeds)} seeds, seg fractions "
          f"{cfg.fractions}, probes {cfg.probes}, positive control: {'yes' if control_config(cfg) else 'no'}, real "
          f"frames: {'yes' if shared else 'no'}", flush=True)
    print(f"[transfer] estimated wall time on the 2-core reference CPU: {estimate}", flush=True)
    if args.dry_run:
        return
    out = Path(args.out or ROOT / "runs" / time.strftime("transfer-%Y%m%d-%H%M%S"))
    saved, timing_file = out / "transfer_config.yaml", out / "timing.json"
    if saved.is_file():
        print(f"[transfer] continuing the protocol in {out}: finished runs are kept", flush=True)
    elif out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty and holds no protocol; pick another --out")
    save_config(cfg, saved)
    records = args.records
    if records is None:
        records = "" if args.quick else str(ROOT / "benchmarks" / "records" / (
            Path(args.config).stem + (f"-x{args.scale:g}" if args.scale != 1 else "")))
    records = Path(records) if records else None
    if records is not None:
        restored = restore_records(records, out)
        if restored:
            print(f"[transfer] restored {restored} finished run result(s) from {records}", flush=True)
    timing = json.loads(timing_file.read_text())["invocations"] if timing_file.is_file() else []
    started, code = time.time(), commit()  # the code this invocation runs, whatever is checked out by its end

    def log(line: str) -> None:
        print(f"[transfer] {line}", flush=True)

    note = ("Skipped: `../shared/data` is absent (or `--real off`)." if shared is None else
            REAL_NOTE.format(frames=frame_count(real_sources(shared)[0])))
    command = shlex.join(["python", "benchmarks/transfer.py", *(argv if argv is not None else sys.argv[1:])])
    result = None
    try:
        with exit_on_stop(command if args.out else f"{command} --out {shlex.quote(str(out))}"):
            result = run_transfer(out, cfg=cfg, shared=shared, log=log)
    finally:  # a stopped invocation's time counts too, and what it finished is kept
        timing.append({"command": command, "commit": code, "machine": machine(),
                       "minutes": (time.time() - started) / 60,
                       "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                       **({} if result is not None else {"stopped": True})})
        write_json(timing_file, {"invocations": timing})
        if records is not None:
            print(f"[transfer] kept {save_records(out, records)} result file(s) in {records}", flush=True)
    text = write_report(result, cfg, command=command, out=out, report=Path(args.report), estimate=estimate,
                        real_note=note, timing=timing)
    print(text, flush=True)


if __name__ == "__main__":
    _main()
