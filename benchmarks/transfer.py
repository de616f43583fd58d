"""The evidence benchmark (issue 7): does Mask3D pre-training transfer better than MAE-RGB, RGB+depth and scratch?

From one config (``mask3d_vit/configs/transfer_cpu.yaml``): pre-train a ViT-Tiny on SynthRooms with each objective at
the same number of steps, then fine-tune segmentation (UperNet) on 100 % and 10 % of the labelled frames and fit
the closed-form frozen depth probe (beside its image-blind floors) on {scratch, MAE-RGB, Mask3D, RGB+depth}, for
every seed; report mean and standard deviation over seeds. Where ``../shared/data`` exists, a real-frames section
follows: pre-training on SynthRooms plus the real unlabelled frames, the depth probe scored on the SUN RGB-D val
frames held out from pre-training, and sim-to-real NYU13 segmentation on the labelled NYUv2 frame. It rewrites
``docs/results.md`` (tables, PNG plots under ``docs/figures/``, the command line, hardware, wall time)::

    python benchmarks/transfer.py                      # ~45 min on 2 CPU cores (the estimate is printed first)
    python benchmarks/transfer.py --dry-run            # print the plan and the time estimate only
    python benchmarks/transfer.py --scale 8            # the same protocol with 8x the frames, for a GPU
    python benchmarks/transfer.py seeds=[0,1,2,3,4] seg.train.epochs=12    # any config key=value

``<out>/rows.json`` gains each (backbone, seed) row as soon as its runs finish, so a stopped run keeps its numbers.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from mask3d_vit.config import load_config, save_config
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset, open_source
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.eval.dense import DenseEvaluator, EvalConfig, SegmentationScore
from mask3d_vit.io import atomic_save, write_json, write_text
from mask3d_vit.tasks.compare import (SCRATCH, CompareConfig, estimate_seconds, format_estimate, objective_variants,
                                      probe_floor_note, run_comparison, summarize, transfer_key)
from mask3d_vit.tasks.finetune import load_dense_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RECIPE = "transfer_cpu"
REFERENCE = "Mask3D"


def scaled(cfg: CompareConfig, scale: float) -> CompareConfig:
    """``cfg`` with ``scale`` x the SynthRooms frames of every run and of every capped evaluation (same epochs)."""
    def data(d: DataConfig) -> DataConfig:
        sources = [dataclasses.replace(s, num_frames=max(1, round(s.num_frames * scale)))
                   if s.format == "synthrooms" else s for s in d.sources]
        return dataclasses.replace(d, sources=sources)

    seg = dataclasses.replace(cfg.seg, data=data(cfg.seg.data), eval=dataclasses.replace(
        cfg.seg.eval, max_images=round(cfg.seg.eval.max_images * scale)))
    probe = dataclasses.replace(cfg.depth_probe, data=data(cfg.depth_probe.data),
                                max_images=round(cfg.depth_probe.max_images * scale))
    return dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, data=data(cfg.pretrain.data)),
                               seg=seg, depth_probe=probe)


def real_sources(shared: Path) -> tuple[list[SourceConfig], list[SourceConfig]]:
    """(real frames for pre-training and probe training, SUN RGB-D val frames held out from both)."""
    train = [SourceConfig(format="nyuv2", root=str(shared / "nyuv2_train_mini"), split="train"),
             SourceConfig(format="sunrgbd", root=str(shared / "sunrgbd_kv2_mini"), split="train")]
    return train, [SourceConfig(format="sunrgbd", root=str(shared / "sunrgbd_kv2_mini"), split="val")]


def frame_count(sources: list[SourceConfig]) -> int:
    return sum(len(open_source(s, split=None)) for s in sources)


def real_frames_config(cfg: CompareConfig, shared: Path) -> CompareConfig:
    """The real-frames experiment: the first seed, SynthRooms + real frames in pre-training, the depth probe (and its
    floors) fit on the real frames and scored on all the held-out SUN RGB-D val frames, and segmentation fine-tuned
    with the SynthRooms recipe (scored sim-to-real by :func:`sim_to_real`)."""
    train, held_out = real_sources(shared)
    pre = cfg.pretrain
    pretrain = dataclasses.replace(pre, data=dataclasses.replace(pre.data, sources=list(pre.data.sources) + train))
    probe = cfg.depth_probe
    probe = dataclasses.replace(probe, data=dataclasses.replace(probe.data, sources=train, val_sources=held_out),
                                max_images=0)
    return dataclasses.replace(cfg, seeds=cfg.seeds[:1], fractions=[1.0], pretrain=pretrain, depth_probe=probe)


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


def run_transfer(out: str | Path, *, cfg: CompareConfig, shared: Path | None, log=print) -> dict:
    """The benchmark's protocol: the comparison, then (when ``shared`` is given) the real-frames experiment.

    Args:
        out: folder of every run (``<out>/real/`` for the real-frames runs).
        cfg: the comparison config.
        shared: the shared sample-data folder, or None to skip the real-frames experiment.
        log: progress lines go here.

    Returns:
        ``rows`` and ``summary`` of the comparison (see :mod:`mask3d_vit.tasks.compare`), ``real_rows`` (one per
        backbone, with ``sim2real/<metric>``; empty without ``shared``) and ``minutes`` per part.
    """
    out = Path(out)
    variants = objective_variants(cfg.objectives)
    t = time.time()
    done: list[dict] = []

    def keep(row: dict) -> None:
        """``<out>/rows.json`` grows with every finished backbone: a stopped run keeps what it measured."""
        done.append(row)
        write_json(out / "rows.json", {"rows": done})

    rows = run_comparison(cfg, out, variants=variants, log=log, on_row=keep)
    minutes = {"comparison": (time.time() - t) / 60}
    real_rows: list[dict] = []
    if shared is not None:
        t = time.time()
        real_rows = run_real_frames(out, cfg=cfg, shared=shared, log=log)
        minutes["real_frames"] = (time.time() - t) / 60
    return {"rows": rows, "summary": summarize(rows), "real_rows": real_rows, "minutes": minutes}


def run_real_frames(out: Path, *, cfg: CompareConfig, shared: Path, log=print) -> list[dict]:
    """The real-frames experiment alone (runs under ``<out>/real/``): one row per backbone, with ``sim2real/*``."""
    rows = run_comparison(real_frames_config(cfg, shared), out / "real", variants=objective_variants(cfg.objectives),
                          log=lambda line: log(f"real frames: {line}"))
    for row in rows:
        row.update({f"sim2real/{k}": v for k, v in sim_to_real(row["seg_run"], shared).items()})
    return rows


# ---------------------------------------------------------------------------------------------------- the report
COLUMNS = [("seg/miou", "seg mIoU", 1), ("seg/pixel_acc", "seg pixel acc", 1), ("depth_probe/abs_rel", "probe AbsRel", 3),
           ("depth_probe/delta1", "probe delta1", 1), ("depth_probe/delta1_med", "probe delta1 (median-scaled)", 1)]
LOWER_IS_BETTER = ("abs_rel", "rmse", "log10")


def comparison_columns(cfg: CompareConfig) -> list[tuple[str, str, int]]:
    """(row key, header, decimals) of the summary table: one seg mIoU column per labelled fraction."""
    extra = [(f"{transfer_key('seg', f)}/miou", f"seg mIoU ({f * 100:g} % labels)", 1) for f in cfg.fractions if f != 1]
    return COLUMNS[:1] + extra + COLUMNS[1:]


def _cell(entry: dict, key: str, decimals: int) -> str:
    if key not in entry:
        return "-"
    mean, std = entry[key]
    return f"{mean:.{decimals}f}" + ("" if math.isnan(std) else f" ± {std:.{decimals}f}")


def summary_table(summary: list[dict], columns: list[tuple[str, str, int]]) -> str:
    lines = ["| backbone | seeds | " + " | ".join(h for _, h, _ in columns) + " | pre-train time |",
             "|---|---|" + "---|" * len(columns) + "---|"]
    for e in summary:
        pre = f"{e['pretrain_s'][0] / 60:.1f} min" if e["backbone"] != SCRATCH else "-"
        lines.append(f"| {e['backbone']} | {e['seeds']} | " + " | ".join(_cell(e, k, d) for k, _, d in columns)
                     + f" | {pre} |")
    return "\n".join(lines)


def seed_table(rows: list[dict], columns: list[tuple[str, str, int]]) -> str:
    lines = ["| backbone | seed | " + " | ".join(h for _, h, _ in columns) + " |", "|---|---|" + "---|" * len(columns)]
    for r in rows:
        cells = " | ".join(f"{r[k]:.{d}f}" if k in r else "-" for k, _, d in columns)
        lines.append(f"| {r['backbone']} | {r['seed']} | {cells} |")
    return "\n".join(lines)


def verdict(summary: list[dict], columns: list[tuple[str, str, int]], reference: str = REFERENCE) -> list[str]:
    """One line per (baseline, metric): the reference's mean difference and whether it exceeds two standard errors.

    The standard error of a difference of two means over n seeds each is sqrt(s1^2 / n1 + s2^2 / n2); with a single
    seed there is no error estimate and every difference is reported as untested.
    """
    by_name = {e["backbone"]: e for e in summary}
    if reference not in by_name:
        return []
    ref = by_name[reference]
    lines = []
    for name, other in by_name.items():
        if name == reference:
            continue
        for key, header, decimals in columns:
            if key not in ref or key not in other:
                continue
            (m1, s1), (m2, s2) = ref[key], other[key]
            diff = m1 - m2
            better = diff < 0 if key.split("/")[-1] in LOWER_IS_BETTER else diff > 0
            se = math.sqrt(s1 ** 2 / ref["seeds"] + s2 ** 2 / other["seeds"])
            if math.isnan(se):
                call = "one seed: untested"
            elif abs(diff) <= 2 * se:
                call = "within noise (|diff| <= 2 standard errors)"
            else:
                call = "better" if better else "WORSE"
            lines.append(f"- {reference} vs {name}, {header}: {diff:+.{decimals}f} ({call})")
    return lines


def bar_figure(summary: list[dict], rows: list[dict], columns: list[tuple[str, str, int]], path: Path) -> Path:
    """One panel per metric: mean over seeds as bars, standard deviation as error bars, each seed as a dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [e["backbone"] for e in summary]
    fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
    for ax, (key, header, _) in zip(axes[0], columns):
        means = [e[key][0] if key in e else math.nan for e in summary]
        stds = [0.0 if key not in e or math.isnan(e[key][1]) else e[key][1] for e in summary]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3, color="#8fb3d9")
        for i, name in enumerate(names):
            values = [r[key] for r in rows if r["backbone"] == name and key in r]
            ax.plot([i] * len(values), values, "k.", markersize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(header, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def efficiency_figure(summary: list[dict], fractions: list[float], path: Path) -> Path:
    """Segmentation mIoU against the fraction of labelled frames, one line per backbone (error bars: std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = sorted(fractions)
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    for e in summary:
        points = [(x * 100, e[f"{transfer_key('seg', x)}/miou"]) for x in xs if f"{transfer_key('seg', x)}/miou" in e]
        ax.errorbar([p[0] for p in points], [p[1][0] for p in points],
                    yerr=[0.0 if math.isnan(p[1][1]) else p[1][1] for p in points], marker="o", capsize=3,
                    label=e["backbone"])
    ax.set_xscale("log")
    ax.set_xlabel("labelled frames used (%)")
    ax.set_ylabel("seg mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return path


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, GPU: {gpu}, Python {platform.python_version()}")


REAL_COLUMNS = [("depth_probe/abs_rel", "probe AbsRel (SUN RGB-D val)", 3),
                ("depth_probe/delta1", "probe delta1", 1), ("depth_probe/delta1_med", "probe delta1 (median-scaled)", 1),
                ("seg/miou", "seg mIoU (SynthRooms val)", 1), ("sim2real/miou", "sim-to-real mIoU (NYUv2)", 1),
                ("sim2real/pixel_acc", "sim-to-real pixel acc (NYUv2)", 1)]


def write_report(result: dict, cfg: CompareConfig, *, command: str, out: Path, report: Path, estimate: str,
                 real_note: str) -> str:
    """Write ``report`` (markdown) with its figures beside it under ``figures/``; returns the markdown."""
    columns = comparison_columns(cfg)
    figures = report.parent / "figures"
    bars = bar_figure(result["summary"], result["rows"], columns, figures / "transfer_metrics.png")
    effic = efficiency_figure(result["summary"], cfg.fractions, figures / "transfer_data_efficiency.png")
    p = cfg.pretrain
    total = sum(result["minutes"].values())
    lines = [
        "# Results: Mask3D against its baselines (issue 7)", "",
        f"Written by `benchmarks/transfer.py` on {time.strftime('%Y-%m-%d %H:%M')}. These are the numbers this run "
        "produced, favourable or not.", "",
        "## How they were made", "",
        f"- Command: `{command}` (resolved config: `{out / 'transfer_config.yaml'}`; every run directory under "
        f"`{out}` holds its own `config.yaml`).",
        f"- Hardware: {hardware()}.",
        f"- Wall time: {total:.1f} min (" + ", ".join(f"{k} {v:.1f} min" for k, v in result["minutes"].items())
        + f"); predicted before starting: {estimate}.",
        f"- Pre-training: {p.model.encoder} at {p.data.size[0]}x{p.data.size[1]}, "
        f"{sum(s.num_frames for s in p.data.sources)} SynthRooms frames x {p.train.epochs} epochs, batch "
        f"{p.train.batch_size}, the same steps for every objective; colour / depth mask ratios "
        f"{p.model.rgb_mask_ratio} / {p.model.depth_mask_ratio}.",
        f"- Transfer: segmentation fine-tuning (UperNet, {cfg.seg.train.epochs} epochs on "
        f"{sum(s.num_frames for s in cfg.seg.data.sources)} labelled frames, and on "
        + ", ".join(f"{f * 100:g} %" for f in cfg.fractions if f != 1)
        + " of them with the same epochs) and the closed-form frozen depth probe (ridge regression of log depth on "
        f"the final features, fit on {sum(s.num_frames for s in cfg.depth_probe.data.sources)} frames, beside the "
        "floors of two predictors that never look at the image); "
        f"seeds {cfg.seeds} set `train.seed` of every run (initialisation, masks, augmentation, data order); the "
        "scenes and the labelled subset are the same for every seed.", "",
        "## Comparison (SynthRooms, mean ± standard deviation over seeds)", "",
        summary_table(result["summary"], columns), "", probe_floor_note(result["rows"]), "",
        "Segmentation in percent (NYU13 classes, SynthRooms val). The depth probe predicts metric depth (AbsRel, "
        "delta1 = % of pixels within 1.25x); the median-scaled delta1 rescales each prediction to the ground "
        "truth's median first, so it scores the shape of the depth map without its scale.", "",
        "### Mask3D against each baseline", "",
        *verdict(result["summary"], columns), "",
        "The pre-training settings behind these rows (masking ratios, fusion, depth target, pre-training length) "
        "and what was tried where Mask3D trails a baseline are in [docs/ablations.md](ablations.md).", "",
        f"![metrics](figures/{bars.name})", "", f"![data efficiency](figures/{effic.name})", "",
        "### Every seed", "", seed_table(result["rows"], columns), "",
    ]
    # Without the real-frames part (--real off) the report keeps the section it already has.
    kept = _split_report(report)[1] if not result["real_rows"] and report.is_file() else None
    text = "\n".join(lines + ([kept] if kept else real_section(result["real_rows"], real_note)))
    write_text(report, text)
    write_json(out / "results.json", {**result, "command": command})
    return text


REAL_HEADING = "## Real frames (small numbers)"


def real_section(real_rows: list[dict], note: str) -> list[str]:
    return [REAL_HEADING, "", note, ""] + ([seed_table(real_rows, REAL_COLUMNS), "", probe_floor_note(real_rows), ""]
                                           if real_rows else [])


def _split_report(report: Path) -> tuple[str, str | None]:
    """An existing report as (the comparison, its real-frames section or None)."""
    head, *section = report.read_text().split(REAL_HEADING, 1)
    return head.rstrip("\n"), REAL_HEADING + section[0].rstrip("\n") + "\n" if section else None


def replace_real_section(report: Path, real_rows: list[dict], note: str) -> str:
    """Rewrite only the real-frames section of an existing report (``--real only``); the comparison stays."""
    if not report.is_file():
        raise SystemExit(f"--real only rewrites the real-frames section of {report}, which does not exist; run the "
                         "whole benchmark first")
    head, _ = _split_report(report)
    text = "\n".join([head, ""] + real_section(real_rows, note))
    write_text(report, text)
    return text


REAL_NOTE = ("Pre-training on SynthRooms plus {frames} real unlabelled frames (NYUv2 and SUN RGB-D Kinect v2 "
             "samples of `../shared/data`), seed {seed}. The depth probe is fit on those real frames and scored "
             "on the 15 SUN RGB-D val frames, which no run saw; segmentation is fine-tuned on SynthRooms and scored "
             "on the one labelled NYUv2 frame (NYU13). A handful of frames: these numbers say whether the pipeline "
             "works on real data, not how well the method does.")


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=RECIPE, help=f"comparison recipe (default {RECIPE})")
    parser.add_argument("--out", default=None, help="folder of the runs (default runs/transfer-<time>)")
    parser.add_argument("--report", default=str(ROOT / "docs" / "results.md"), help="markdown report to rewrite")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every frame count (GPU runs: 4-16)")
    parser.add_argument("--real", choices=("auto", "on", "off", "only"), default="auto",
                        help="the real-frames experiment: auto = when ../shared/data exists; only = run just that "
                             "part and rewrite just its section of the report; when it is not run, the report "
                             "keeps the section it already has")
    parser.add_argument("--shared", default=str(SHARED), help="the shared sample-data folder")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate, run nothing")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. seeds=[0,1]")
    args = parser.parse_args(argv)

    cfg = scaled(load_config(CompareConfig, args.config, args.overrides), args.scale)
    shared = Path(args.shared)
    if args.real in ("on", "only") and not shared.is_dir():
        raise SystemExit(f"--real {args.real}: {shared} does not exist")
    shared = shared if args.real != "off" and shared.is_dir() else None
    variants = objective_variants(cfg.objectives)
    stages = {"total": 0.0} if args.real == "only" else estimate_seconds(cfg, variants=variants)
    real_cfg = real_frames_config(cfg, shared) if shared is not None else None
    if real_cfg is not None:
        stages["real_frames"] = estimate_seconds(real_cfg, variants=variants)["total"]
        stages["total"] += stages["real_frames"]
    estimate = format_estimate(stages)
    print(f"[transfer] {len(cfg.objectives)} objectives x {len(cfg.seeds)} seeds, seg fractions {cfg.fractions}, "
          f"real frames: {'yes' if shared else 'no'}", flush=True)
    print(f"[transfer] estimated wall time on the 2-core reference CPU: {estimate}", flush=True)
    if args.dry_run:
        return
    out = Path(args.out or ROOT / "runs" / time.strftime("transfer-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty; pick another --out")
    save_config(cfg, out / "transfer_config.yaml")

    def log(line: str) -> None:
        print(f"[transfer] {line}", flush=True)

    note = ("Skipped: `../shared/data` is absent (or `--real off`)." if real_cfg is None else
            REAL_NOTE.format(frames=frame_count(real_sources(shared)[0]), seed=real_cfg.seeds[0]))
    command = shlex.join(["python", "benchmarks/transfer.py", *(argv if argv is not None else sys.argv[1:])])
    if args.real == "only":
        t = time.time()
        real_rows = run_real_frames(out, cfg=cfg, shared=shared, log=log)
        write_json(out / "real_results.json", {"real_rows": real_rows, "command": command})
        note += (f" Run on its own by `{command}` ({hardware()}; {(time.time() - t) / 60:.1f} min; runs under "
                 f"`{out}`).")
        print(replace_real_section(Path(args.report), real_rows, note), flush=True)
        return
    result = run_transfer(out, cfg=cfg, shared=shared, log=log)
    text = write_report(result, cfg, command=command, out=out, report=Path(args.report), estimate=estimate,
                        real_note=note)
    print(text, flush=True)


if __name__ == "__main__":
    _main()
