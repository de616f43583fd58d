"""The comparison protocol shared by ``mask3d-vit demo`` and ``benchmarks/transfer.py`` / ``benchmarks/ablations.py``.

For every pre-training variant (an objective, an objective continued from another's backbone, or an ablation's
config change) and every seed: pre-train once, then fine-tune semantic segmentation on each fraction of the
labelled frames and fit the closed-form frozen probes (:func:`mask3d_vit.tasks.finetune.run_probe`) on that
backbone; ``scratch`` (no pre-training) goes through the same transfer runs. Every run uses the same recipe except
for what the variant changes, so rows differ only by the backbone::

    cfg = load_config(CompareConfig, "transfer_cpu")
    rows = run_comparison(cfg, "runs/transfer", variants=objective_variants(cfg.objectives, cfg))
    print(summarize(rows))

Every run writes ``result.json`` (its metrics, seconds, and the recipe it ran) when it finishes, so a protocol that
is stopped and started again runs only what is missing, and a run whose recipe changed runs again. With
``workers > 1`` the runs are shared out to that many processes (``python -m mask3d_vit.tasks.compare``); with
``materialize`` the SynthRooms frames are rendered once into frames folders that every run reads.

A row is one (backbone, seed): ``pretrain_s``/``pretrain_run`` and, per transfer run ``key`` (``seg`` on all the
labelled frames, ``seg@10%`` on a tenth of them, ``depth_probe``, ``seg_probe``), ``<key>_s``, ``<key>_run`` and
the run's final evaluation metrics as ``<key>/<metric>`` (``miou``, ``pixel_acc``... in percent; ``abs_rel``,
``delta1``, ``delta1_med``... for depth). A probe's image-blind floors, fit on the same frames, follow as
``<probe>_floor/constant/<metric>`` and ``<probe>_floor/position/<metric>``; ``machines`` lists the hardware its
runs ran on (:func:`machine`). ``pretrain/<metric>`` holds the
pre-training run's final validation figures (``loss_depth``, ``rgb_reliance``, ``vs_interpolation``... of
:mod:`mask3d_vit.eval.pretext`) and ``pretrain/train_min``, the minutes of its training steps over every sitting
(``pretrain_s`` counts the last one only). With ``ceiling_steps`` a last row, backbone ``supervised``, holds
``seg_ceiling/<metric>`` and ``depth_ceiling/<metric>``: both tasks fine-tuned from scratch on all the labelled
frames for that many steps.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..checkpoint import list_checkpoints
from ..config import ConfigError, from_dict, load_config, save_config, to_dict
from ..data.build import DataConfig, SourceConfig, open_source, val_sources
from ..data.registry import get_format
from ..engine.logger import training_seconds
from ..engine.trainer import TrainingInterrupted
from ..io import write_json
from ..models.mask3d import Mask3D
from ..models.vit import encoder_patch_size
from .finetune import FinetuneConfig, ProbeConfig, run_finetune, run_probe
from .pretrain import PretrainConfig, run_pretrain

OBJECTIVE_NAMES = {"depth": "Mask3D", "rgb": "MAE-RGB", "rgb+depth": "RGB+depth"}
# MAE-RGB is MAE's recipe whatever Mask3D's design in the base recipe (which may show every colour patch, score
# only depth-hidden patches and start from interpolated depth): MAE hides 0.75 of the colour and scores it all.
MAE_RGB = ["model.objective=rgb", "model.rgb_mask_ratio=0.75", "model.loss_region=all", "model.depth_prior=none"]
OBJECTIVE_OVERRIDES = {"rgb": MAE_RGB, "rgb+depth": ["model.objective=rgb+depth", "model.rgb_mask_ratio=0.75"]}
# Mask3D as the paper reads it: the design keys at the `Mask3D` constructor's defaults (colour and depth masked at
# 0.75, loss on all patches, no depth prior), read from the signature so the variant follows the library.
PAPER_DESIGN_KEYS = ("rgb_mask_ratio", "depth_mask_ratio", "mask_scheme", "loss_region", "depth_prior")
PAPER_DESIGN = ["model.objective=depth"] + [
    f"model.{k}={inspect.signature(Mask3D.__init__).parameters[k].default}" for k in PAPER_DESIGN_KEYS]
PAPER_NAME = "Mask3D (paper design)"
EQUAL_COMPUTE_NAME = "MAE-RGB (equal compute)"
SCRATCH = "scratch"
CEILING = "supervised"
# A cost model of ViT-Tiny runs on one thread of the 2-core reference CPU (bf16), used only to predict a protocol's
# wall time. A pre-training image costs PRETRAIN_MS[0] + [1] x encoder tokens + [2] x all patches + [3] x encoder
# tokens^2 (attention), times OBJECTIVE_COST (decoding colour, and a depth branch beside it, cost more); a fine-tuning
# image SEG_MS[0] x pixels / 96x128 (the UperNet head) + [1] x tokens; an evaluated image a third of that and a
# probed one 0.2; rendering a SynthRooms frame RENDER_MS x pixels / 96x128. Fit to single steps at 96x128 with patch
# 16 and 8, then to the 3840-step runs of the issue-23 protocol, two single-thread workers at once on a 2-core AMD
# EPYC Zen 4 (2026-12-07, median img/s: the default Mask3D 17.9 ms an image, the paper's design 7.2, MAE-RGB 7.3;
# fine-tunings ~20 % and probes ~30 % under the model before). The issue-15 fit (encoder tokens 0.164 ms, MAE
# 1.19x) had come from 320-step runs on an idle core and predicted the issue-23 protocol at 156 min; it took ~200.
PRETRAIN_MS = (2.5, 0.28, 0.007, 1e-4)
OBJECTIVE_COST = {"depth": 1.0, "rgb": 1.02, "rgb+depth": 1.53}
SEG_MS = (7.8, 0.142)
RENDER_MS = 6.1
DECODE_MS = 1.0                 # reading a frame back from a materialised frames folder
REFERENCE_PIXELS = 96 * 128
TWO_THREADS = 1.6               # one process on both cores against one core; two workers give 2
RUN_OVERHEAD_S = 8.0  # model build, first-batch warm-up, final evaluation set-up, checkpoint and figure writing


@dataclass
class CompareConfig:
    """A comparison: pre-training recipe and objectives, seeds, labelled fractions and the transfer recipes."""
    objectives: list[str] = field(default_factory=lambda: ["depth", "rgb"])
    seeds: list[int] = field(default_factory=lambda: [0])      # train.seed of every run (init, masks, data order)
    fractions: list[float] = field(default_factory=lambda: [1.0])  # of the seg fine-tuning frames
    # Optimizer steps of the seg fine-tuning at each fraction (same order); [] = the seg recipe's epochs at every
    # fraction. Steps rather than epochs: 1 % of the frames for the epochs of 100 % would be a handful of steps.
    seg_steps: list[int] = field(default_factory=list)
    # Mask3D as the paper reads it (PAPER_DESIGN), the same steps, beside the base recipe's design.
    paper_design: bool = False
    # > 0: MAE-RGB also pre-trained for this many times the steps of the others ("MAE-RGB (equal compute)"): the
    # measured cost of a step of the base recipe's design over an MAE step, so that both spend the same compute.
    compute_ratio: float = 0.0
    # Continued pre-training (the paper's setting: Mask3D on top of an MAE encoder): each objective here is
    # pre-trained for `continue_steps` more steps from the `continue_from` backbone of the same seed.
    continue_from: str = "rgb"
    continued: list[str] = field(default_factory=list)
    continue_steps: int = 0
    probes: list[str] = field(default_factory=lambda: ["depth"])  # closed-form frozen probes: depth, seg
    # Blocks (0-based) whose tokens every probe also reads, beside the last block's (row key `depth_probe@block4`):
    # what a backbone knew before its last blocks specialised to the pre-training decoder.
    probe_layers: list[int] = field(default_factory=list)
    # > 0: the positive control (:func:`control_config`): the same backbones on SynthRooms frames lit by a headlamp
    # of this strength (`camera_light`: brightness falls with depth, so colour is known to carry depth).
    control_light: float = 0.0
    control_epochs: int = 0        # the control's pre-training epochs (0: as the comparison's)
    # > 0: the supervised ceilings (row "supervised"): seg and depth fine-tuned from scratch on all the labelled
    # frames for this many steps, first seed; they are scored on the same frames as the probes and fine-tunings.
    ceiling_steps: int = 0
    # Render every generated (SynthRooms) source once into a frames folder under <out>/frames that every run reads:
    # a protocol of many runs then renders each frame once instead of once per run.
    materialize: bool = False
    workers: int = 1               # runs at once, each with cores / workers threads (CPU); 1 on a GPU
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seg: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(task="seg"))
    depth_probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(task="depth"))
    seg_probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(task="seg"))


def objective_variants(objectives: list[str], cfg: CompareConfig | None = None) -> dict[str, list[str]]:
    """Pre-training variants of a comparison of objectives: display name -> pre-training overrides.

    With ``cfg``, its extra variants follow their objective: ``cfg.paper_design`` adds :data:`PAPER_NAME` after
    Mask3D, ``cfg.compute_ratio`` adds :data:`EQUAL_COMPUTE_NAME` (MAE-RGB for that many times the steps) after
    MAE-RGB, and the continued variants come last: ``"MAE-RGB → Mask3D"`` is the Mask3D objective pre-trained
    ``cfg.continue_steps`` more steps from the MAE-RGB backbone of the same seed (``init_from=variant:MAE-RGB``,
    which :func:`run_comparison` resolves and waits for).
    """
    def names(objs: list[str], key: str) -> list[str]:
        unknown = [o for o in objs if o not in OBJECTIVE_NAMES]
        if unknown:
            raise ConfigError(f"{key} {unknown}: choose from {', '.join(OBJECTIVE_NAMES)}")
        return objs

    variants = {}
    for o in names(objectives, "objectives"):
        variants[OBJECTIVE_NAMES[o]] = OBJECTIVE_OVERRIDES.get(o, [f"model.objective={o}"])
        if cfg is not None and o == "depth" and cfg.paper_design:
            variants[PAPER_NAME] = PAPER_DESIGN
        if cfg is not None and o == "rgb" and cfg.compute_ratio:
            if cfg.compute_ratio < 1:
                raise ConfigError(f"compute_ratio={cfg.compute_ratio}: a step of the recipe's design costs at "
                                  "least an MAE step")
            epochs = math.ceil(cfg.pretrain.train.epochs * cfg.compute_ratio)
            steps = round(pretrain_steps(cfg.pretrain) * cfg.compute_ratio)
            variants[EQUAL_COMPUTE_NAME] = MAE_RGB + [f"train.epochs={epochs}", f"train.max_steps={steps}"]
    if cfg is not None and cfg.continued:
        base = OBJECTIVE_NAMES[names([cfg.continue_from], "continue_from")[0]]
        if base not in variants:
            raise ConfigError(f"continue_from={cfg.continue_from!r} must be one of the objectives {objectives}")
        if cfg.continue_steps <= 0:
            raise ConfigError(f"continue_steps={cfg.continue_steps}: continued pre-training needs steps > 0")
        for o in names(cfg.continued, "continued"):
            variants[f"{base} → {OBJECTIVE_NAMES[o]}"] = OBJECTIVE_OVERRIDES.get(o, [f"model.objective={o}"]) + [
                f"train.max_steps={cfg.continue_steps}", f"init_from=variant:{base}"]
    return variants


def control_config(cfg: CompareConfig) -> CompareConfig | None:
    """The positive control of ``cfg``, or None without ``cfg.control_light``: the same backbones at the first seed
    on SynthRooms frames lit by a headlamp of that strength (every generated source of every run), pre-trained for
    ``cfg.control_epochs`` epochs (continued pre-training shortened in proportion), probes only."""
    if cfg.control_light <= 0:
        return None

    def lit(d: DataConfig) -> DataConfig:
        def light(sources: list[SourceConfig]) -> list[SourceConfig]:
            return [dataclasses.replace(s, camera_light=cfg.control_light) if get_format(s.format).generator else s
                    for s in sources]
        return dataclasses.replace(d, sources=light(d.sources), val_sources=light(d.val_sources))

    p = cfg.pretrain
    share = (cfg.control_epochs or p.train.epochs) / p.train.epochs
    train = dataclasses.replace(p.train, epochs=round(p.train.epochs * share),
                                max_steps=round(p.train.max_steps * share))
    return dataclasses.replace(
        cfg, seeds=cfg.seeds[:1], fractions=[], seg_steps=[], ceiling_steps=0, control_light=0.0,
        continue_steps=max(1, round(cfg.continue_steps * share)),
        pretrain=dataclasses.replace(p, data=lit(p.data), train=train), seg=dataclasses.replace(cfg.seg, data=lit(
            cfg.seg.data)), depth_probe=dataclasses.replace(cfg.depth_probe, data=lit(cfg.depth_probe.data)),
        seg_probe=dataclasses.replace(cfg.seg_probe, data=lit(cfg.seg_probe.data)))


def check_scenes(cfg: CompareConfig) -> None:
    """Raise ConfigError when a transfer run would fit or score generated scenes that pre-training saw, or a probe
    would score the scenes it is fit on: every SynthRooms frame is its own scene, drawn from (seed, index), so
    disjoint seeds mean disjoint scenes. The evidence protocol (benchmarks/transfer.py) checks its config with it."""
    def seeds(d: DataConfig, split: str) -> set[int]:
        sources = d.sources if split == "train" else val_sources(d)
        return {s.seed for s in sources if get_format(s.format).generator}

    pretrained = seeds(cfg.pretrain.data, "train") | seeds(cfg.pretrain.data, "val")
    for name, data, scored in (("seg", cfg.seg.data, cfg.seg.eval.split), ("depth_probe", cfg.depth_probe.data,
                               cfg.depth_probe.split), ("seg_probe", cfg.seg_probe.data, cfg.seg_probe.split)):
        fit, score = seeds(data, "train"), seeds(data, scored)
        if (fit | score) & pretrained:
            raise ConfigError(f"{name}.data: SynthRooms seed(s) {sorted((fit | score) & pretrained)} are pre-training "
                              "scenes too; transfer runs must fit and score other scenes (another seed)")
        if fit & score:
            raise ConfigError(f"{name}.data: it is scored on the scenes it is fit on (seed(s) {sorted(fit & score)})")


def pretrain_steps(p: PretrainConfig) -> int:
    """Optimizer steps of a pre-training run: ``train.max_steps``, or every epoch of its training frames."""
    per_epoch = int(_source_frames(p.data, "train")) // p.train.batch_size
    return min(p.train.max_steps or math.inf, p.train.epochs * per_epoch)


def transfer_key(task: str, fraction: float = 1.0) -> str:
    """Row key of a transfer run: ``seg``, ``seg@10%``, ``depth_probe``."""
    return task if fraction == 1.0 else f"{task}@{fraction * 100:g}%"


def transfer_runs(cfg: CompareConfig) -> dict[str, FinetuneConfig | ProbeConfig]:
    """The transfer runs of one backbone and seed: row key -> config (fractions applied to every seg source)."""
    if cfg.depth_probe.task != "depth":
        raise ConfigError(f"depth_probe.task={cfg.depth_probe.task!r}: the comparison's probe is a depth probe")
    if cfg.seg_probe.task != "seg":
        raise ConfigError(f"seg_probe.task={cfg.seg_probe.task!r}: the comparison's seg probe is a seg probe")
    if cfg.seg_steps and len(cfg.seg_steps) != len(cfg.fractions):
        raise ConfigError(f"seg_steps={cfg.seg_steps}: give one step count per fraction {cfg.fractions}")
    unknown = sorted(set(cfg.probes) - {"depth", "seg"})
    if unknown:
        raise ConfigError(f"probes {unknown}: choose from depth, seg")
    runs = {}
    for i, fraction in enumerate(cfg.fractions):
        if not 0 < fraction <= 1:
            raise ConfigError(f"fractions: {fraction} must lie in (0, 1]")
        sources = [dataclasses.replace(s, fraction=s.fraction * fraction) for s in cfg.seg.data.sources]
        run = dataclasses.replace(cfg.seg, data=dataclasses.replace(cfg.seg.data, sources=sources))
        runs[transfer_key("seg", fraction)] = _with_steps(run, cfg.seg_steps[i]) if cfg.seg_steps else run
    if len(set(cfg.probe_layers)) != len(cfg.probe_layers) or -1 in cfg.probe_layers:
        raise ConfigError(f"probe_layers={cfg.probe_layers}: give each block once; the last (-1) is always probed")
    for task in ("depth", "seg"):
        if task in cfg.probes:
            probe = getattr(cfg, f"{task}_probe")
            runs[probe_key(task)] = probe
            runs.update({probe_key(task, layer): dataclasses.replace(probe, layer=layer)
                         for layer in cfg.probe_layers})
    return runs


def probe_key(task: str, layer: int = -1) -> str:
    """Row key of a probe: ``depth_probe`` (the last block), ``depth_probe@block4``."""
    return f"{task}_probe" + ("" if layer == -1 else f"@block{layer}")


def _with_steps(run: FinetuneConfig, steps: int) -> FinetuneConfig:
    """``run`` trained for ``steps`` optimizer steps, warm-up the same share of them as in the recipe."""
    if steps <= 0:
        raise ConfigError(f"seg_steps: {steps} must be > 0")
    per_epoch = max(1, int(_source_frames(run.data, "train")) // run.train.batch_size)
    epochs = math.ceil(steps / per_epoch)
    share = run.optim.warmup_epochs / max(run.train.epochs, 1)
    return dataclasses.replace(run, train=dataclasses.replace(run.train, epochs=epochs, max_steps=steps),
                               optim=dataclasses.replace(run.optim, warmup_epochs=share * epochs))


def variant_pretrain(cfg: CompareConfig, overrides: list[str]) -> PretrainConfig:
    """The pre-training config of one variant: ``cfg.pretrain`` with the variant's ``key=value`` overrides."""
    return load_config(PretrainConfig, None, list(overrides), base=to_dict(cfg.pretrain))


def slug(name: str) -> str:
    """A display name as a folder name: ``"MAE-RGB (equal compute)"`` -> ``mae-rgb_equal_compute``."""
    name = name.lower().replace("%", "pct").replace(" → ", "-then-")
    return "_".join("".join(c if c.isalnum() or c in "-." else " " for c in name).split())


@dataclass
class RunSpec:
    """One run of a comparison: a pre-training (``key`` "pretrain") or a transfer run from ``backbone``."""
    key: str
    backbone: str
    seed: int
    run_dir: Path
    needs: list[RunSpec]              # the runs it starts from: their results must exist first
    config: object                    # PretrainConfig, FinetuneConfig or ProbeConfig
    init: str = ""                    # backbone weights of a transfer run ("" = scratch)

    @property
    def result_file(self) -> Path:
        return self.run_dir / "result.json"


def plan_runs(cfg: CompareConfig, out: Path, variants: dict[str, list[str]], *, scratch: bool = True,
              transfer: bool = True) -> tuple[list[RunSpec], list[tuple[int, str, RunSpec | None]]]:
    """Every run of the comparison in execution order, and the (seed, backbone, pre-training run) of each row.

    Pre-trainings come first in each seed, so a continued variant's base (``init_from=variant:<name>``) is always
    listed before it. Every run's ``needs`` are the runs it starts from, so its recorded recipe holds theirs.
    """
    if not cfg.seeds:
        raise ConfigError("seeds is empty: give at least one seed")
    suffix = (lambda seed: f"-s{seed}") if len(cfg.seeds) > 1 else (lambda seed: "")
    runs = transfer_runs(cfg) if transfer else {}
    units, rows = [], []
    for seed in cfg.seeds:
        pretrained: dict[str, RunSpec | None] = {SCRATCH: None} if scratch else {}
        for name, overrides in variants.items():
            run_dir = out / f"pretrain-{slug(name)}{suffix(seed)}"
            overrides, needs = list(overrides), []
            for i, o in enumerate(overrides):
                if o.startswith("init_from=variant:"):
                    base = pretrained.get(o[len("init_from=variant:"):])
                    if base is None:
                        raise ConfigError(f"variant {name!r} continues from {o[len('init_from=variant:'):]!r}, "
                                          "which is not pre-trained before it")
                    overrides[i] = f"init_from={base.run_dir}"
                    needs.append(base)
            run_cfg = variant_pretrain(cfg, overrides + [f"train.seed={seed}"])
            pretrained[name] = RunSpec("pretrain", name, seed, run_dir, needs, run_cfg)
            units.append(pretrained[name])
        for name, init in pretrained.items():
            rows.append((seed, name, init))
            for key, task_cfg in runs.items():
                run_dir = out / f"{slug(key)}-{slug(name)}{suffix(seed)}"
                units.append(RunSpec(key, name, seed, run_dir, [init] if init else [], task_cfg,
                                     str(init.run_dir) if init else ""))
    if cfg.ceiling_steps and transfer:
        seed = cfg.seeds[0]
        rows.append((seed, CEILING, None))
        seg = _with_steps(cfg.seg, cfg.ceiling_steps)
        for key, task_cfg in (("seg_ceiling", seg), ("depth_ceiling", dataclasses.replace(seg, task="depth"))):
            units.append(RunSpec(key, CEILING, seed, out / f"{key}{suffix(seed)}", [], task_cfg))
    return units, rows


def _recorded(unit: RunSpec) -> dict:
    """What ``result.json`` records of how ``unit`` ran, JSON-normalised: its config, its starting weights and,
    transitively, the records of the runs it starts from (a fine-tuning holds its backbone's pre-training recipe,
    a continued pre-training its base's), so a change anywhere upstream makes it run again."""
    return json.loads(json.dumps({"config": to_dict(unit.config), "init": unit.init,
                                  "needs": [_recorded(need) for need in unit.needs]}))


# Train keys that change what a run writes, not what it computes: a recipe that changes only these keeps its runs.
BOOKKEEPING = ("log_every", "ckpt_every", "keep_ckpts", "figure_every")


def _without_bookkeeping(recorded: dict) -> dict:
    config = dict(recorded["config"])
    if isinstance(config.get("train"), dict):
        config["train"] = {k: v for k, v in config["train"].items() if k not in BOOKKEEPING}
    return {**recorded, "config": config, "needs": [_without_bookkeeping(n) for n in recorded.get("needs") or []]}


def _cached(unit: RunSpec) -> dict | None:
    """The result of ``unit`` from an earlier run of the protocol, or None (never run, or run with another recipe)."""
    if not unit.result_file.is_file():
        return None
    result = json.loads(unit.result_file.read_text())
    recorded = _recorded(unit)
    if "config" not in result:  # a result written before runs recorded their recipe
        return result
    same = _without_bookkeeping({k: result.get(k) for k in recorded}) == _without_bookkeeping(recorded)
    return result if same else None


def weightless(units: list[RunSpec]) -> list[RunSpec]:
    """The finished runs of ``units`` whose checkpoints are absent (a result restored from records on another
    machine, benchmarks/transfer.py ``--records``) while a run still to do starts from them: those must run again
    for their weights. Seeded, they give the same backbone (bitwise on the same hardware); the runs already
    finished from them keep their results."""
    pending = {u.run_dir for u in units if _cached(u) is None}
    needed = {n.run_dir for u in units if u.run_dir in pending for n in u.needs}
    return [u for u in units if u.run_dir in needed and u.run_dir not in pending and not list_checkpoints(u.run_dir)]


def run_once(unit: RunSpec, log: Callable[[str], None]) -> dict:
    """Run ``unit`` unless an earlier run of the protocol left its result; its result.

    A run directory left without a result by an interruption continues from its last checkpoint; one whose recipe
    changed since is run again from the start.
    """
    cached = _cached(unit)
    if cached is not None:
        return cached
    if unit.result_file.is_file():
        log(f"{unit.run_dir}: its recipe changed since it ran; running it again")
        shutil.rmtree(unit.run_dir)
    what = "pre-training" if unit.key == "pretrain" else f"{unit.key} from"
    log(f"{what} {unit.backbone}, seed {unit.seed} -> {unit.run_dir}")
    t = time.time()
    resume = "auto" if (unit.run_dir / "checkpoints").is_dir() else None
    extra = {}
    if unit.key == "pretrain":
        save_config(unit.config, unit.run_dir / "config.yaml")
        result = run_pretrain(unit.config, unit.run_dir, resume=resume)
        metrics = {f"pretrain/{k[len('eval/val_'):]}": v for k, v in result.items() if k.startswith("eval/val_")}
        # "seconds" counts this invocation only; the log holds every step of a run resumed across sittings.
        extra = {"train_seconds": training_seconds(unit.run_dir, unit.config.train.batch_size)}
    else:
        metrics = _transfer(unit.config, unit.run_dir, key=unit.key, init=unit.init, seed=unit.seed, resume=resume)
    result = {"seconds": time.time() - t, "metrics": metrics, "machine": machine(), **extra, **_recorded(unit)}
    write_json(unit.result_file, result)
    return result


def machine() -> str:
    """The hardware a run ran on, in one line: CPU model and logical cores, GPU, torch and Python versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"{cpu}, {os.cpu_count()} logical cores, GPU: {gpu}, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def _claim(unit: RunSpec, claims: Path) -> bool:
    """Atomically take ``unit`` for this process (False when another worker already has it)."""
    try:
        os.close(os.open(claims / unit.run_dir.name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _work(units: list[RunSpec], claims: Path | None, log: Callable[[str], None], poll_s: float = 2.0) -> None:
    """Run every unit not taken by another worker: the first in plan order whose needed runs have finished with
    their current recipe (a stale result of a run about to run again does not count), so a worker waits only when
    every run left needs one that another worker is still running."""
    pending = [unit for unit in units if _cached(unit) is None]
    finished: set[Path] = set()  # needed runs found current: each is read once a poll until it is, then never again
    while pending:
        waiting = {n.run_dir: n for u in pending for n in u.needs if n.run_dir not in finished}
        finished |= {run_dir for run_dir, need in waiting.items() if _cached(need) is not None}
        unit = next((u for u in pending if all(n.run_dir in finished for n in u.needs)), None)
        if unit is None:
            time.sleep(poll_s)
            continue
        pending.remove(unit)
        if claims is None or _claim(unit, claims):
            run_once(unit, log)


class ComparisonInterrupted(TrainingInterrupted):
    """A signal stopped the workers of :func:`run_comparison`, each after saving the checkpoint of the run it was
    training (a worker between trainings stops at once: the runs it finished are kept).

    Args:
        signum: the signal the comparison received.
        stops: ``{"step", "run_dir"}`` of each run a worker stopped in.
        out: the comparison's folder.
    """

    def __init__(self, signum: int, stops: list[dict], out: Path):
        super().__init__(signum, max((s["step"] for s in stops), default=0), out)
        self.stops = stops

    @property
    def saved(self) -> str:
        runs = " and ".join(f"{Path(s['run_dir']).name} at step {s['step']}" for s in self.stops)
        return (f"in {runs} (checkpoints saved; finished runs under {self.run_dir} are kept)" if runs else
                f"between runs (finished runs under {self.run_dir} are kept)")


def _worker_main(spec_file: str, index: int) -> None:
    """A worker process of :func:`run_comparison` (``python -m mask3d_vit.tasks.compare SPEC INDEX``).

    Stopped by a signal, it exits with 128 + the signal's number and no traceback, writing where it stopped to
    ``.claims/stopped-<index>.json`` for the parent's one line."""
    # Outside a training (whose trainer saves and stops at a step boundary) SIGTERM ends the worker like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import torch

    spec = json.loads(Path(spec_file).read_text())
    torch.set_num_threads(spec["threads"])
    cfg = from_dict(CompareConfig, spec["cfg"])
    out = Path(spec["out"])
    units, _ = plan_runs(cfg, out, spec["variants"], scratch=spec["scratch"], transfer=spec["transfer"])
    try:
        _work(units, out / ".claims", lambda line: print(f"[worker {index}] {line}", flush=True))
    except TrainingInterrupted as stop:
        write_json(out / ".claims" / f"stopped-{index}.json", {"step": stop.step, "run_dir": str(stop.run_dir)})
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside a training
        sys.exit(128 + signal.SIGINT)


def _wait_forwarding_signals(procs: list[subprocess.Popen]) -> tuple[list[int], list[int]]:
    """Wait for ``procs``; SIGTERM or SIGINT received meanwhile is passed on to them as SIGTERM (Ctrl-C already
    reached them from the terminal: a second SIGINT would make their trainers quit without saving).

    Returns:
        The exit codes, and the signals this process received.
    """
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return [proc.wait() for proc in procs], received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_comparison(cfg: CompareConfig, out: str | Path, *, variants: dict[str, list[str]], scratch: bool = True,
                   log: Callable[[str], None] = print, on_row: Callable[[dict], None] | None = None,
                   transfer: bool = True) -> list[dict]:
    """Pre-train every variant per seed, then run every transfer recipe from every backbone.

    Every run that finishes writes ``<run dir>/result.json``; calling this again on the same ``out`` (an
    interrupted protocol) keeps those and runs only the rest. With ``cfg.workers > 1`` the runs are shared out
    to that many processes (each with ``cores / workers`` threads).

    Args:
        cfg: the comparison (``cfg.objectives`` is not read: ``variants`` says what to pre-train).
        out: folder of the runs: ``pretrain-<variant>``, ``<key>-<backbone>`` (``-s<seed>`` appended when
            ``cfg.seeds`` has several seeds), each a normal run directory with its ``config.yaml``.
        variants: display name -> ``key=value`` overrides of ``cfg.pretrain`` (e.g. ``objective_variants(...)``);
            ``init_from=variant:<name>`` starts from the backbone of an earlier variant of the same seed.
        scratch: also transfer from a randomly initialised backbone (row ``scratch``).
        log: progress lines go here.
        on_row: called with each row once all its runs are done.
        transfer: run the transfer recipes; False pre-trains only (rows then hold the pre-training diagnostics).

    Returns:
        One row per (backbone, seed), in the order scratch, then ``variants``, seed-major (see the module docstring).

    Raises:
        TrainingInterrupted: SIGTERM or Ctrl-C stopped the runs (:class:`ComparisonInterrupted` with workers); calling
            again on the same ``out`` continues.
    """
    out = Path(out)
    if cfg.materialize:
        cfg = materialize(cfg, out / "frames", log=log)
    units, row_keys = plan_runs(cfg, out, variants, scratch=scratch, transfer=transfer)
    while stale := weightless(units):  # again: a run set to rerun may itself start from a weightless one
        for unit in stale:
            log(f"{unit.run_dir}: finished, but its weights are not here (a restored record) and runs still to do "
                "start from them: running it again")
            unit.result_file.unlink()
    if cfg.workers > 1:
        claims = out / ".claims"
        shutil.rmtree(claims, ignore_errors=True)  # no worker runs now: claims left by a stopped protocol are stale
        claims.mkdir(parents=True)
        spec = claims / "spec.json"
        write_json(spec, {"cfg": to_dict(cfg), "out": str(out), "variants": variants, "scratch": scratch,
                          "transfer": transfer, "threads": max(1, (os.cpu_count() or 1) // cfg.workers)})
        # Fresh interpreters (not multiprocessing): nothing of the caller's __main__ is re-imported.
        procs = [subprocess.Popen([sys.executable, "-m", "mask3d_vit.tasks.compare", str(spec), str(i)])
                 for i in range(cfg.workers)]
        codes, received = _wait_forwarding_signals(procs)
        if received:
            stops = [json.loads(f.read_text()) for f in sorted(claims.glob("stopped-*.json"))]
            raise ComparisonInterrupted(received[0], stops, out)
        failed = [i for i, code in enumerate(codes) if code]
        if failed:
            raise RuntimeError(f"comparison workers {failed} failed (see their output above); run again with the "
                               f"same out={out} to continue from the runs that finished")
    else:
        _work(units, None, log)
    results = {u.run_dir: run_once(u, log) for u in units}  # all cached by now
    rows = []
    for seed, name, init in row_keys:
        row = {"backbone": name, "seed": seed, "pretrain_s": 0.0, "pretrain_run": str(init.run_dir if init else "")}
        if init:
            row.update(pretrain_s=results[init.run_dir]["seconds"], **results[init.run_dir]["metrics"])
            train_s = results[init.run_dir].get("train_seconds")
            if train_s is None:  # a result written before results kept it: its log, where the run has one
                train_s = training_seconds(init.run_dir, init.config.train.batch_size)
            if train_s is not None:
                row["pretrain/train_min"] = train_s / 60
        own = [init] if init else []
        for u in units:
            if u.key != "pretrain" and u.backbone == name and u.seed == seed:
                own.append(u)
                row.update({f"{u.key}_s": results[u.run_dir]["seconds"], f"{u.key}_run": str(u.run_dir),
                            **results[u.run_dir]["metrics"]})
        row["machines"] = sorted({results[u.run_dir].get("machine", "not recorded") for u in own})
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _transfer(task_cfg: FinetuneConfig | ProbeConfig, run_dir: Path, *, key: str, init: str, seed: int,
              resume: str | None = None) -> dict[str, float]:
    """Run one transfer recipe from backbone ``init`` ("" = scratch) with ``seed``; its row entries.

    A fine-tuning run gives ``<key>/<metric>`` from its final evaluation (per-class IoUs left out); a probe gives
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
    result = run_finetune(task_cfg, run_dir, init_from=init, resume=resume)
    return {f"{key}/{k[5:]}": v for k, v in result.items() if k.startswith("eval/") and "/iou/" not in k}


def materialize(cfg: CompareConfig, root: str | Path, log: Callable[[str], None] = print) -> CompareConfig:
    """``cfg`` with every generated source rendered once into a frames folder under ``root`` and read from there.

    A generated source's validation frames (another seed, see :func:`mask3d_vit.data.build.build_dataset`) are
    written too, as many as the run reads, and become its ``val_sources``. Folders are named by what they hold, so
    runs that read the same frames share one, and writing is resumable (an interrupted protocol renders only what
    is missing).
    """
    from ..data.synthrooms import write_synthrooms

    root = Path(root)

    def folder(src: SourceConfig, size: tuple[int, int], seed: int, num: int) -> SourceConfig:
        settings = src.options.generator(tuple(size))
        tag = hashlib.sha1(json.dumps(to_dict(settings), sort_keys=True).encode()).hexdigest()[:8]
        path = root / f"{src.format}-s{seed}-n{num}-{tag}"
        if not (path / "meta.json").is_file() or len(open_source(
                SourceConfig("frames", root=str(path), split="all"), split=None)) < num:
            log(f"rendering {num} {src.format} frames (seed {seed}) once -> {path}")
            write_synthrooms(path, num, seed=seed, cfg=settings, val_fraction=0.0, progress=False,
                             workers=os.cpu_count() or 1)
        return SourceConfig("frames", root=str(path), split="all", seed=src.seed, fraction=src.fraction)

    def data(d: DataConfig, val_frames: int) -> DataConfig:
        if not any(get_format(s.format).generator for s in list(d.sources) + list(d.val_sources)):
            return d
        sources = [folder(s, d.size, s.seed, s.num_frames) if get_format(s.format).generator else s for s in d.sources]
        val = [folder(s, d.size, s.seed, min(s.num_frames, val_frames) if val_frames else s.num_frames)
               if get_format(s.format).generator else s for s in val_sources(d)]
        return dataclasses.replace(d, sources=sources, val_sources=val)

    p = cfg.pretrain
    return dataclasses.replace(
        cfg, pretrain=dataclasses.replace(p, data=data(p.data, p.val_batches * p.train.batch_size)),
        seg=dataclasses.replace(cfg.seg, data=data(cfg.seg.data, cfg.seg.eval.max_images)),
        depth_probe=dataclasses.replace(cfg.depth_probe, data=data(cfg.depth_probe.data, cfg.depth_probe.max_images)),
        seg_probe=dataclasses.replace(cfg.seg_probe, data=data(cfg.seg_probe.data, cfg.seg_probe.max_images)))


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

    A cost model in tokens and pixels (:data:`PRETRAIN_MS`, :data:`SEG_MS`) fit to ViT-Tiny steps; other encoders
    or machines make the prediction a rough guide only.

    Args:
        cfg: the comparison.
        variants: as for :func:`run_comparison`; each variant is priced with its own overrides (a variant that
            pre-trains 4x longer costs 4x).
        scratch, transfer: as for :func:`run_comparison`.

    Returns:
        ``{"frames": s, "pretrain": s, "seg": s, "probes": s, "total": s}`` ("frames": the one-time rendering of
        a materialised protocol).
    """
    read_ms = DECODE_MS if cfg.materialize else RENDER_MS

    def pixels(size) -> float:
        return size[0] * size[1] / REFERENCE_PIXELS

    def images(data: DataConfig, train) -> float:
        total = _source_frames(data, "train") * train.epochs
        return min(total, train.max_steps * train.batch_size) if train.max_steps else total

    def pretrain_seconds(p: PretrainConfig) -> float:
        patches = p.data.size[0] * p.data.size[1] / encoder_patch_size(p.model.encoder) ** 2
        seen = patches * (1 - p.model.rgb_mask_ratio)
        a, b, c, d = PRETRAIN_MS
        ms = (a + b * seen + c * patches + d * seen ** 2) * OBJECTIVE_COST.get(p.model.objective, 1.0) \
            + read_ms * pixels(p.data.size)
        n = images(p.data, p.train)
        val = p.val_batches * p.train.batch_size * (p.train.epochs / max(p.train.eval_every, 1) + 1)
        return (n * ms + val * ms / 3) / 1000 + RUN_OVERHEAD_S

    def seg_ms(encoder: str, size) -> float:
        return SEG_MS[0] * pixels(size) + SEG_MS[1] * size[0] * size[1] / encoder_patch_size(encoder) ** 2

    seeds = len(cfg.seeds)
    pretrain = seeds * sum(pretrain_seconds(variant_pretrain(cfg, overrides)) for overrides in variants.values())
    backbones = (len(variants) + int(scratch)) * seeds
    stages = {"frames": 0.0, "pretrain": pretrain, "seg": 0.0, "probes": 0.0}
    rendered = [(cfg.pretrain.data, cfg.pretrain.val_batches * cfg.pretrain.train.batch_size)]
    for key, run in (transfer_runs(cfg) if transfer else {}).items():
        if isinstance(run, ProbeConfig):  # closed form: one pass over the training frames and the scored ones
            scored = _source_frames(run.data, run.split)
            scored = min(scored, run.max_images) if run.max_images else scored
            frames = _source_frames(run.data, "train") + scored
            ms = seg_ms(run.encoder, run.data.size) * 0.2 + read_ms * pixels(run.data.size)
            stages["probes"] += backbones * (frames * ms / 1000 + RUN_OVERHEAD_S)
            if (run.data, run.max_images) not in rendered:  # the probes of every block read the same frames
                rendered.append((run.data, run.max_images))
            continue
        evaluated = _source_frames(run.data, run.eval.split)
        evaluated = min(evaluated, run.eval.max_images) if run.eval.max_images else evaluated
        evaluations = 1 + (run.train.epochs // run.train.eval_every if run.train.eval_every else 0)
        ms = seg_ms(run.model.encoder, run.data.size)
        reads = (_source_frames(run.data, "train") + evaluated) * read_ms * pixels(run.data.size)
        stages["seg"] += backbones * ((images(run.data, run.train) * ms + evaluated * evaluations * ms / 3 + reads)
                                      / 1000 + RUN_OVERHEAD_S)
    if transfer:  # every fraction reads the one labelled folder
        rendered.append((cfg.seg.data, cfg.seg.eval.max_images))
    if cfg.ceiling_steps and transfer:  # seg and depth from scratch, once
        run = cfg.seg
        evaluated = min(_source_frames(run.data, run.eval.split), run.eval.max_images or math.inf)
        ms = seg_ms(run.model.encoder, run.data.size)
        stages["seg"] += 2 * ((cfg.ceiling_steps * run.train.batch_size * ms + evaluated * ms / 3) / 1000
                              + RUN_OVERHEAD_S)
    if cfg.materialize:
        frames = sum(_source_frames(d, "train") + min(_source_frames(d, "val"), n or math.inf) for d, n in rendered)
        # + 2 ms of PNG encoding per frame; every core renders
        stages["frames"] = frames * (RENDER_MS + 2.0) / 1000 / (os.cpu_count() or 1)
    parallel = 2.0 if cfg.workers > 1 else TWO_THREADS
    stages = {k: v / (1.0 if k == "frames" else parallel) for k, v in stages.items()}
    stages["total"] = sum(stages.values())
    return stages


def format_estimate(stages: dict[str, float]) -> str:
    """One line: ``~38 min (pretrain 12.0 + seg 20.1 + depth_probe 5.9 min)``."""
    parts = " + ".join(f"{k} {v / 60:.1f}" for k, v in stages.items() if k != "total")
    return f"~{stages['total'] / 60:.0f} min ({parts} min)"


if __name__ == "__main__":
    _worker_main(sys.argv[1], int(sys.argv[2]))
