"""The comparison protocol shared by ``mask3d-vit demo`` and ``benchmarks/transfer.py`` / ``benchmarks/ablations.py``.

For every pre-training variant (an objective, or an ablation's config change) and every seed: pre-train once, then
fine-tune semantic segmentation on each fraction of the labelled frames and fit the closed-form frozen depth probe
(:func:`mask3d_vit.tasks.finetune.run_probe`) on that backbone; ``scratch`` (no pre-training) goes through the same
transfer runs. Every run uses the same recipe except for what the variant changes, so rows differ only by the
backbone::

    cfg = load_config(CompareConfig, "transfer_cpu")
    rows = run_comparison(cfg, "runs/transfer", variants=objective_variants(cfg.objectives))
    print(summary_table(summarize(rows)))

A row is one (backbone, seed): ``pretrain_s``/``pretrain_run`` and, per transfer run ``key`` (``seg`` on all the
labelled frames, ``seg@10%`` on a tenth of them, ``depth_probe``), ``<key>_s``, ``<key>_run`` and the run's final
evaluation metrics as ``<key>/<metric>`` (``miou``, ``pixel_acc``... in percent; ``abs_rel``, ``delta1``,
``delta1_med``... for depth). The probe's image-blind floors, fit on the same frames, follow as
``depth_probe_floor/constant/<metric>`` and ``depth_probe_floor/position/<metric>``. ``pretrain/<metric>`` holds
the pre-training run's final validation figures (``loss_depth``, ``rgb_reliance``, ``vs_interpolation``... of
:mod:`mask3d_vit.eval.pretext`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import ConfigError, load_config, save_config, to_dict
from ..data.build import DataConfig, open_source
from ..data.registry import get_format
from .finetune import FinetuneConfig, ProbeConfig, run_finetune, run_probe
from .pretrain import PretrainConfig, run_pretrain

OBJECTIVE_NAMES = {"depth": "Mask3D", "rgb": "MAE-RGB", "rgb+depth": "RGB+depth"}
# MAE-RGB is MAE's recipe whatever Mask3D's design in the base recipe (which may show every colour patch, score
# only depth-hidden patches and start from interpolated depth): MAE hides 0.75 of the colour and scores it all.
MAE_RGB = ["model.objective=rgb", "model.rgb_mask_ratio=0.75", "model.loss_region=all", "model.depth_prior=none"]
OBJECTIVE_OVERRIDES = {"rgb": MAE_RGB, "rgb+depth": ["model.objective=rgb+depth", "model.rgb_mask_ratio=0.75"]}
SCRATCH = "scratch"
# Images per second of ViT-Tiny runs at 96x128 on the 2-core CPU (docs/cpu-performance.md machine, bf16, idle),
# including SynthRooms rendering and data transforms; used only to predict a protocol's wall time. "depth_probe"
# counts every frame the closed-form probe reads once (training frames + scored frames): it renders the training
# frames twice (floors, then features), runs the encoder on all of them and scores three predictors per val frame
# (512 + 256 frames took 75 s on this machine shared with other jobs, about one core free: 10/s; 20/s with both).
REFERENCE_RATES = {"pretrain": 160.0, "seg": 50.0, "depth_probe": 20.0, "eval": 300.0}
REFERENCE_PIXELS = 96 * 128
RUN_OVERHEAD_S = 4.0  # model build, first-batch warm-up, checkpoint and figure writing per run


@dataclass
class CompareConfig:
    """A comparison: pre-training recipe and objectives, seeds, labelled fractions and the two transfer recipes."""
    objectives: list[str] = field(default_factory=lambda: ["depth", "rgb"])
    seeds: list[int] = field(default_factory=lambda: [0])      # train.seed of every run (init, masks, data order)
    fractions: list[float] = field(default_factory=lambda: [1.0])  # of the seg fine-tuning frames
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seg: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(task="seg"))
    depth_probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(task="depth"))


def objective_variants(objectives: list[str]) -> dict[str, list[str]]:
    """Pre-training variants of a comparison of objectives: display name -> pre-training overrides."""
    unknown = [o for o in objectives if o not in OBJECTIVE_NAMES]
    if unknown:
        raise ConfigError(f"objectives {unknown}: choose from {', '.join(OBJECTIVE_NAMES)}")
    return {OBJECTIVE_NAMES[o]: OBJECTIVE_OVERRIDES.get(o, [f"model.objective={o}"]) for o in objectives}


def transfer_key(task: str, fraction: float = 1.0) -> str:
    """Row key of a transfer run: ``seg``, ``seg@10%``, ``depth_probe``."""
    return task if fraction == 1.0 else f"{task}@{fraction * 100:g}%"


def transfer_runs(cfg: CompareConfig) -> dict[str, FinetuneConfig | ProbeConfig]:
    """The transfer runs of one backbone and seed: row key -> config (fractions applied to every seg source)."""
    if cfg.depth_probe.task != "depth":
        raise ConfigError(f"depth_probe.task={cfg.depth_probe.task!r}: the comparison's probe is a depth probe")
    runs = {}
    for fraction in cfg.fractions:
        if not 0 < fraction <= 1:
            raise ConfigError(f"fractions: {fraction} must lie in (0, 1]")
        sources = [dataclasses.replace(s, fraction=s.fraction * fraction) for s in cfg.seg.data.sources]
        runs[transfer_key("seg", fraction)] = dataclasses.replace(
            cfg.seg, data=dataclasses.replace(cfg.seg.data, sources=sources))
    runs["depth_probe"] = cfg.depth_probe
    return runs


def variant_pretrain(cfg: CompareConfig, overrides: list[str]) -> PretrainConfig:
    """The pre-training config of one variant: ``cfg.pretrain`` with the variant's ``key=value`` overrides."""
    return load_config(PretrainConfig, None, list(overrides), base=to_dict(cfg.pretrain))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name.lower().replace("%", "pct"))


def run_comparison(cfg: CompareConfig, out: str | Path, *, variants: dict[str, list[str]], scratch: bool = True,
                   log: Callable[[str], None] = print, on_row: Callable[[dict], None] | None = None,
                   transfer: bool = True) -> list[dict]:
    """Pre-train every variant per seed, then run every transfer recipe from every backbone.

    Args:
        cfg: the comparison (``cfg.objectives`` is not read: ``variants`` says what to pre-train).
        out: folder of the runs: ``pretrain-<variant>``, ``<key>-<backbone>`` (``-s<seed>`` appended when
            ``cfg.seeds`` has several seeds), each a normal run directory with its ``config.yaml``.
        variants: display name -> ``key=value`` overrides of ``cfg.pretrain`` (e.g. ``objective_variants(...)``).
        scratch: also transfer from a randomly initialised backbone (row ``scratch``).
        log: progress lines go here.
        on_row: called with each row as soon as its runs are done, so a long protocol that is stopped keeps the
            rows it finished (the benchmarks save them there).
        transfer: run the transfer recipes; False pre-trains only (rows then hold the pre-training diagnostics).

    Returns:
        One row per (backbone, seed), in the order scratch, then ``variants``, seed-major (see the module docstring).
    """
    out = Path(out)
    if not cfg.seeds:
        raise ConfigError("seeds is empty: give at least one seed")
    suffix = (lambda seed: f"-s{seed}") if len(cfg.seeds) > 1 else (lambda seed: "")
    runs = transfer_runs(cfg)
    rows = []
    for seed in cfg.seeds:
        backbones = {SCRATCH: ("", 0.0, {})} if scratch else {}
        for name, overrides in variants.items():
            run_dir = out / f"pretrain-{_slug(name)}{suffix(seed)}"
            run_cfg = variant_pretrain(cfg, list(overrides) + [f"train.seed={seed}"])
            log(f"pre-training {name}, seed {seed} -> {run_dir}")
            t = time.time()
            save_config(run_cfg, run_dir / "config.yaml")
            result = run_pretrain(run_cfg, run_dir)
            backbones[name] = (str(run_dir), time.time() - t, {f"pretrain/{k[len('eval/val_'):]}": v
                                                                for k, v in result.items()
                                                                if k.startswith("eval/val_")})
        for name, (init, seconds, pretrain_metrics) in backbones.items():
            row = {"backbone": name, "seed": seed, "pretrain_s": seconds, "pretrain_run": init, **pretrain_metrics}
            for key, task_cfg in (runs if transfer else {}).items():
                run_dir = out / f"{_slug(key)}-{_slug(name)}{suffix(seed)}"
                log(f"{key} from {name}, seed {seed} -> {run_dir}")
                t = time.time()
                metrics = _transfer(task_cfg, run_dir, key=key, init=init, seed=seed)
                row[f"{key}_s"] = time.time() - t
                row[f"{key}_run"] = str(run_dir)
                row.update(metrics)
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows


def _transfer(task_cfg: FinetuneConfig | ProbeConfig, run_dir: Path, *, key: str, init: str, seed: int
              ) -> dict[str, float]:
    """Run one transfer recipe from backbone ``init`` ("" = scratch) with ``seed``; its row entries.

    A fine-tuning run gives ``<key>/<metric>`` from its final evaluation (per-class IoUs left out); the probe gives
    ``<key>/<metric>`` from the probe and ``<key>_floor/{constant,position}/<metric>`` from its floors.
    """
    if isinstance(task_cfg, ProbeConfig):
        result = run_probe(dataclasses.replace(task_cfg, init_from=init, seed=seed), run_dir)
        parts = {key: result["probe"], f"{key}_floor/constant": result["constant"],
                 f"{key}_floor/position": result["position"]}
        return {f"{prefix}/{k}": float(v) for prefix, metrics in parts.items() for k, v in metrics.items()
                if isinstance(v, (int, float))}
    task_cfg = dataclasses.replace(task_cfg, train=dataclasses.replace(task_cfg.train, seed=seed))
    save_config(task_cfg, run_dir / "config.yaml")
    result = run_finetune(task_cfg, run_dir, init_from=init)
    return {f"{key}/{k[5:]}": v for k, v in result.items() if k.startswith("eval/") and "/iou/" not in k}


FLOOR_METRICS = (("abs_rel", "AbsRel", 3), ("delta1", "delta1", 1), ("delta1_med", "delta1 (median-scaled)", 1))


def probe_floor_note(rows: list[dict], key: str = "depth_probe") -> str:
    """One line for under a table of ``rows``: the probe's constant and position-only floors, or "" without them.

    The floors are fit on the probe's frames without looking at any image, so every backbone and seed has the same;
    the first row that holds them speaks for all.
    """
    row = next((r for r in rows if f"{key}_floor/position/abs_rel" in r), None)
    if row is None:
        return ""
    position, constant = (" / ".join(f"{title} {row[f'{key}_floor/{kind}/{k}']:.{d}f}" for k, title, d in FLOOR_METRICS
                                     if f"{key}_floor/{kind}/{k}" in row) for kind in ("position", "constant"))
    return (f"Depth probe floors (image-blind predictors fit on the probe's frames): position-only {position}; "
            f"constant {constant}.")


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds of every numeric row entry, per backbone (first-seen order).

    Returns:
        One dict per backbone: ``backbone``, ``seeds`` (count), and ``<key>`` -> ``(mean, std)`` (std is NaN for a
        single seed).
    """
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["backbone"], []).append(row)
    summary = []
    for name, group in groups.items():
        entry: dict = {"backbone": name, "seeds": len(group)}
        keys = [k for k, v in group[0].items() if isinstance(v, (int, float)) and k != "seed"]
        for k in keys:
            values = np.array([r[k] for r in group if k in r], dtype=np.float64)
            entry[k] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan)
        summary.append(entry)
    return summary


def _source_frames(data: DataConfig, split: str) -> float:
    """Frames a run reads from ``data`` (SynthRooms: ``num_frames``; other formats: their readers' length)."""
    total = 0.0
    for src in data.sources if split == "train" or not data.val_sources else data.val_sources:
        generated = get_format(src.format).generator
        count = src.num_frames if generated else len(open_source(src, split=split, size=data.size))
        total += max(1, round(count * src.fraction)) if split == "train" else count
    return total


def estimate_seconds(cfg: CompareConfig, *, variants: dict[str, list[str]], scratch: bool = True,
                     transfer: bool = True) -> dict[str, float]:
    """Predicted wall time of :func:`run_comparison` on the 2-core reference CPU, per stage and in total.

    The reference rates (:data:`REFERENCE_RATES`, ViT-Tiny at 96x128) are scaled by pixel count; other encoders or
    machines make the prediction a rough guide only.

    Args:
        cfg: the comparison.
        variants: as for :func:`run_comparison`; each variant is priced with its own overrides (a variant that
            pre-trains 4x longer costs 4x).
        scratch, transfer: as for :func:`run_comparison`.

    Returns:
        ``{"pretrain": s, "seg": s, "depth_probe": s, "total": s}``.
    """
    def seconds(rate_key: str, images: float, size: tuple[int, int]) -> float:
        return images * size[0] * size[1] / REFERENCE_PIXELS / REFERENCE_RATES[rate_key]

    def pretrain_seconds(p: PretrainConfig) -> float:
        images = _source_frames(p.data, "train") * p.train.epochs
        val = p.val_batches * p.train.batch_size * (p.train.epochs / max(p.train.eval_every, 1) + 1)
        return seconds("pretrain", images, p.data.size) + seconds("eval", val, p.data.size) + RUN_OVERHEAD_S

    seeds = len(cfg.seeds)
    pretrain = seeds * sum(pretrain_seconds(variant_pretrain(cfg, overrides)) for overrides in variants.values())
    backbones = (len(variants) + int(scratch)) * seeds
    stages = {"pretrain": pretrain, "seg": 0.0, "depth_probe": 0.0}
    for key, run in (transfer_runs(cfg) if transfer else {}).items():
        if isinstance(run, ProbeConfig):  # closed form: one pass over the training frames and the scored ones
            scored = _source_frames(run.data, run.split)
            scored = min(scored, run.max_images) if run.max_images else scored
            stages["depth_probe"] += backbones * (seconds("depth_probe", _source_frames(run.data, "train") + scored,
                                                          run.data.size) + RUN_OVERHEAD_S)
            continue
        evaluated = _source_frames(run.data, run.eval.split)
        evaluated = min(evaluated, run.eval.max_images) if run.eval.max_images else evaluated
        evaluations = 1 + (run.train.epochs // run.train.eval_every if run.train.eval_every else 0)
        stages["seg"] += backbones * (seconds("seg", _source_frames(run.data, "train") * run.train.epochs,
                                              run.data.size)
                                      + seconds("eval", evaluated * evaluations, run.data.size) + RUN_OVERHEAD_S)
    stages["total"] = sum(stages.values())
    return stages


def format_estimate(stages: dict[str, float]) -> str:
    """One line: ``~38 min (pretrain 12.0 + seg 20.1 + depth_probe 5.9 min)``."""
    parts = " + ".join(f"{k} {v / 60:.1f}" for k, v in stages.items() if k != "total")
    return f"~{stages['total'] / 60:.0f} min ({parts} min)"
