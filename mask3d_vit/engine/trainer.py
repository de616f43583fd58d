"""The one training loop every task uses.

The model computes its own loss: ``out = model(batch)`` returns a dict whose ``"loss"`` is optimised and whose other
0-dim ``loss*`` entries are logged. The loop knows nothing about masking, segmentation or boxes; it owns the
optimizer and schedule, precision, gradient accumulation, DDP, the NaN guard, checkpoints, exact resume, logging,
periodic evaluation and figures.
"""
from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint import CKPT_DIR, CheckpointError, list_checkpoints, load_latest, save_checkpoint
from ..config import save_config, to_saved
from . import distributed as D
from .data import ResumableSampler, SeededDataset, make_loader, seed_all
from .logger import RunLogger, TrainClock
from .optim import OptimConfig, build_optimizer, lr_at, set_lr

log = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"


@dataclass
class TrainConfig:
    """How to train (the loop's knobs, shared by every task)."""
    epochs: int = 10
    max_steps: int = 0                # > 0: the run's length in optimizer steps (epochs then do not count; the
                                      # data repeats as often as needed); 0: train.epochs over the training set
    batch_size: int = 32              # global: summed over processes and accumulation steps
    accum_steps: int = 1
    precision: str = "auto"           # auto (bf16 where the hardware has it, else fp32) | bf16 | fp16 (CUDA) | fp32
    device: str = "auto"              # auto | cpu | cuda
    num_workers: int = 0              # CPU training: workers steal the cores the matmuls need
    seed: int = 0
    log_every: int = 10               # optimizer steps
    ckpt_every: int = 0               # optimizer steps; 0 = at the end of every epoch
    keep_ckpts: int = 2
    figure_every: int = 0             # optimizer steps; 0 = only at the end
    eval_every: int = 1               # epochs; 0 = only at the end
    nan_policy: str = "skip"          # skip: drop the step, count and log it | stop: raise
    grad_checkpointing: bool = False
    compile: bool = False


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if _cpu_has_bf16() else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"train.precision={precision!r}: use auto, bf16, fp16 or fp32")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return precision


def _cpu_has_bf16() -> bool:
    # Without native bf16 instructions, CPU autocast emulates bf16 and runs slower than fp32.
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _rng_state() -> dict:
    # Plain Python data only: it travels through all_gather_object and loads with weights_only=True.
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.random.get_rng_state().tolist(),
             "numpy": [kind, key.tolist(), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.random.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    kind, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


class NonFiniteLossError(FloatingPointError):
    """Raised under ``nan_policy=stop``; the last good checkpoint is untouched."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training at a step boundary, after every rank agreed and a checkpoint was saved.

    Args:
        signum: the signal this process received (SIGTERM where only another rank got one).
        step: the optimizer step the checkpoint holds.
        run_dir: the run directory the checkpoint is in.
    """

    def __init__(self, signum: int, step: int, run_dir: Path):
        super().__init__(f"{signal.Signals(signum).name} at step {step}: checkpoint saved in {run_dir}")
        self.signum, self.step, self.run_dir = signum, step, run_dir

    @property
    def saved(self) -> str:
        """Where the stop left the work, for the one line a command prints after "stopped by SIGTERM"."""
        return f"at step {self.step}; checkpoint saved in {Path(self.run_dir) / CKPT_DIR}"


class StopSignals:
    """Within the block, SIGTERM and SIGINT are recorded in :attr:`received` (in arrival order) instead of killing
    the process; a second Ctrl-C quits at once (KeyboardInterrupt). The handlers found on entry are back on exit.
    Outside the main thread signals cannot be caught: nothing is installed.

    A class rather than a generator so that mutation testing reaches the handler (docs/testing.md).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: list[int] = []
        self.previous: dict = {}

    def handler(self, signum, frame) -> None:
        # Only a repeated SIGINT quits: on Ctrl-C under torchrun a worker gets SIGINT from the terminal and SIGTERM
        # from the agent, and must still save.
        if signum == signal.SIGINT and signal.SIGINT in self.received:
            raise KeyboardInterrupt
        if not self.received:
            log.warning("%s received: stopping after this step and saving a checkpoint (Ctrl-C again to quit "
                        "without saving)", signal.Signals(signum).name)
        self.received.append(signum)

    def __enter__(self) -> list[int]:
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handler) for s in self.SIGNALS}
        return self.received

    def __exit__(self, *exc) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


class Trainer:
    """Trains ``model`` on ``train_set``.

    Args:
        model: returns a dict with a scalar ``"loss"`` from ``model(batch)``. It declares its own training hooks,
            each called only where defined: ``set_attention_backend(device, precision)`` (once the loop knows
            both), ``no_weight_decay()``, ``group_matcher()`` (layer decay) and ``set_grad_checkpointing()``.
        train_set: map-style dataset of sample dicts.
        train: loop settings.
        optim: optimizer and schedule.
        run_dir: where checkpoints, metrics, TensorBoard logs and figures go.
        config: the resolved run config as plain data, stored in every checkpoint with its schema version.
        evaluator: ``evaluator(model) -> dict[str, float]``, run on all ranks (it reduces its own sums) every
            ``eval_every`` epochs and at the end.
        visualizer: ``visualizer(model, batch, path)`` writes a PNG for a fixed batch (rank 0 only).
        collate_fn: for batches the default collate cannot build (e.g. variable-size detection targets).
        batch_transform: ``batch_transform(batch) -> batch``, applied to every training batch once it is on the
            device: the per-batch part of the augmentation (the colour jitter of ``data.augment_on_device``).
    """

    def __init__(self, model: torch.nn.Module, train_set, *, train: TrainConfig, optim: OptimConfig,
                 run_dir: str | Path, config: dict, evaluator: Callable | None = None,
                 visualizer: Callable | None = None, collate_fn=None, batch_transform: Callable | None = None):
        if train.nan_policy not in ("skip", "stop"):
            raise ValueError(f"train.nan_policy={train.nan_policy!r}: use skip or stop")
        self.cfg, self.optim_cfg, self.config = train, optim, config
        self.run_dir = Path(run_dir)
        self.evaluator, self.visualizer, self.collate_fn = evaluator, visualizer, collate_fn
        self.batch_transform = batch_transform
        self.device = D.init_distributed(train.device)
        self.precision = resolve_precision(train.precision, self.device)
        self.rank, self.world = D.get_rank(), D.get_world_size()

        micro, rem = divmod(train.batch_size, self.world * train.accum_steps)
        if micro < 1 or rem:
            raise ValueError(f"train.batch_size={train.batch_size} must be a multiple of processes x accum_steps "
                             f"= {self.world} x {train.accum_steps}")
        self.micro_batch = micro
        self.dataset = SeededDataset(train_set, train.seed)
        self.sampler = ResumableSampler(len(train_set), shuffle=True, seed=train.seed, rank=self.rank,
                                        world_size=self.world)
        self.steps_per_epoch = self.sampler.per_rank // micro // train.accum_steps
        if self.steps_per_epoch < 1:
            raise ValueError(f"the training set has {len(train_set)} samples, fewer than one global batch of "
                             f"{train.batch_size}; lower train.batch_size or add data")
        if train.max_steps < 0:
            raise ValueError(f"train.max_steps={train.max_steps}: use a positive number of steps, or 0 for all of "
                             f"train.epochs")
        # max_steps is what a user asks for when they name a number of steps (README: "a short run: 200 steps"):
        # it replaces the epochs instead of capping them.
        self.total_steps = train.max_steps or train.epochs * self.steps_per_epoch

        # Training-time randomness (masks, dropout): reproducible, and different on every rank.
        seed_all(train.seed + self.rank)

        if hasattr(model, "set_attention_backend"):
            model.set_attention_backend(self.device, self.precision)
        if train.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ValueError(f"train.grad_checkpointing=true but {type(model).__name__} does not support it")
            model.set_grad_checkpointing(True)
        if self.world > 1 and self.device.type == "cuda":
            # Per-GPU batches are small; BatchNorm heads (UperNet) need statistics over the global batch.
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, optim)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                           else None) if self.world > 1 else None
        self.forward = self.ddp or self.model
        if train.compile:
            self.forward = torch.compile(self.forward)
        self.peak_lr = optim.base_lr * train.batch_size / 256
        self.warmup = min(round(optim.warmup_epochs * self.steps_per_epoch), self.total_steps)
        # (step, lr) the decay starts from when a resume changed the run's length; None: the peak after warm-up.
        self.decay_from: tuple[int, float] | None = None
        self.step, self.skipped = 0, 0

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rng = _rng_state()
        if self.world > 1:
            every = [None] * self.world
            dist.all_gather_object(every, rng)
            rng = every
        else:
            rng = [rng]
        return {"format": "mask3d-vit-checkpoint", "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "epoch": self.step // self.steps_per_epoch, "skipped_steps": self.skipped,
                "world_size": self.world, "rng": rng, "config": to_saved(self.config),
                "schedule": {"total": self.total_steps, "warmup": self.warmup,
                             "decay_from": list(self.decay_from) if self.decay_from else None}}

    def save(self) -> None:
        state = self.state_dict()  # collective under DDP: every rank builds it, rank 0 writes it
        if D.is_main():
            save_checkpoint(state, self.run_dir, self.step, keep=self.cfg.keep_ckpts)
        D.barrier()

    def load(self, resume: str) -> None:
        """``resume``: "auto" (newest loadable checkpoint of this run dir, or a fresh start if none) or a path."""
        if resume == "auto":
            if not list_checkpoints(self.run_dir):
                # Right on a SLURM job's first start (every submission passes --resume auto), and a whole run
                # lost to a mistyped --out otherwise: say it where it cannot be missed.
                if D.is_main():
                    log.warning("--resume auto: no checkpoint in %s, so this is a NEW run from step 0 of %d. If you "
                                "meant to continue a run, stop and check --out.",
                                (self.run_dir / CKPT_DIR).resolve(), self.total_steps)
                return
            path, state = load_latest(self.run_dir)
        else:
            path, state = load_latest(resume)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.skipped = int(state["step"]), int(state.get("skipped_steps", 0))
        if self.step > self.total_steps:
            raise CheckpointError(f"{path}: step {self.step} is past this run's {self.total_steps} steps "
                                  f"(train.epochs, max_steps or batch_size changed?)")
        if len(state["rng"]) == self.world:
            _set_rng_state(state["rng"][self.rank])
        else:
            log.warning("%s was written by %d processes, now %d: RNG streams restart (resume is not bitwise exact)",
                        path, len(state["rng"]), self.world)
        if D.is_main():
            print(f"resumed from {path} at step {self.step}", flush=True)
        if "schedule" in state:  # checkpoints written before it recorded its schedule rebuild it from the config
            self._resume_schedule(state["schedule"])

    def _resume_schedule(self, saved: dict) -> None:
        """Take over the schedule a checkpoint ran; when this run's length differs from it (``train.max_steps`` or
        ``train.epochs`` changed to extend a run), decay from the rate of the last step taken to ``min_lr`` at the
        new end: the rate goes on without a jump and does not warm up again."""
        self.warmup = saved["warmup"]
        self.decay_from = tuple(saved["decay_from"]) if saved["decay_from"] else None
        if saved["total"] == self.total_steps:
            return
        last = self.step - 1
        if last >= self.warmup and self.optim_cfg.schedule != "constant":
            self.decay_from = (last, lr_at(last, peak=self.peak_lr, total=saved["total"], warmup=self.warmup,
                                           cfg=self.optim_cfg, decay_from=self.decay_from))
        if D.is_main():
            start = (f"from {self.decay_from[1]:.3g}, the rate of step {self.decay_from[0] + 1}" if self.decay_from
                     else f"from the warm-up's end at step {self.warmup}")
            how = ("stays at the peak" if self.optim_cfg.schedule == "constant" else
                   f"decays ({self.optim_cfg.schedule}) {start}, to optim.min_lr={self.optim_cfg.min_lr:g} at step "
                   f"{self.total_steps}")
            print(f"schedule: this run was {saved['total']} steps and is now {self.total_steps}; the learning rate "
                  f"{how}, without warming up again (to warm up again, start a new run from these weights: --out "
                  f"NEW_DIR --init-from {self.run_dir})", flush=True)

    # -- the loop ----------------------------------------------------------------------------------------------
    def _to_device(self, batch):
        if isinstance(batch, dict):
            return {k: self._to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self._to_device(v) for v in batch)
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        return batch

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _all_finite(self, value: torch.Tensor) -> bool:
        flag = torch.tensor([float(torch.isfinite(value).all())], device=self.device)
        return bool(D.all_reduce_sum(flag).item() == self.world)

    def fit(self, resume: str | None = None) -> dict:
        """Train for ``train.epochs`` (or ``train.max_steps``); returns the last logged losses and evaluation metrics.

        Raises :class:`TrainingInterrupted` once SIGTERM or SIGINT made every rank stop and save a checkpoint.
        """
        if resume:
            self.load(resume)
        if D.is_main():
            # Written once everything is built and checked: a command that failed before leaves no config that
            # --resume would take for a run's.
            save_config(self.config, self.run_dir / CONFIG_FILE)
            self._print_plan()
        logger = RunLogger(self.run_dir, total_steps=self.total_steps, start_step=self.step)
        loader = make_loader(self.dataset, batch_size=self.micro_batch, sampler=self.sampler,
                             num_workers=self.cfg.num_workers, seed=self.cfg.seed, collate_fn=self.collate_fn,
                             pin_memory=self.device.type == "cuda")
        fixed = self._fixed_batch() if self.visualizer and D.is_main() else None
        result: dict = {}
        sums: dict[str, float] = {}
        count = images = 0
        ckpt_every = self.cfg.ckpt_every or self.steps_per_epoch
        clock = TrainClock()
        first = self.step + 1
        # A run resumed after its last step was stopped after its last checkpoint (in its final evaluation or
        # figure): it does those again, so its result is complete.
        finished = self.step == self.total_steps
        self.model.train()
        with contextlib.ExitStack() as stack:
            stack.callback(logger.close)
            received = stack.enter_context(StopSignals())
            while self.step < self.total_steps:
                epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
                self.dataset.epoch = epoch
                self.sampler.set_epoch(epoch, start=in_epoch * self.cfg.accum_steps * self.micro_batch)
                batches = iter(loader)
                for _ in range(in_epoch, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch)):
                    started = time.perf_counter()
                    losses = self._train_step(batches)
                    self.step += 1
                    if self.step == first and D.is_main():
                        print(f"step {self.step} took {time.perf_counter() - started:.1f} s (the first is the slowest: "
                              f"start-up costs); the log prints every {self.cfg.log_every} steps", flush=True)
                    if losses is not None:
                        for k, v in losses.items():
                            sums[k] = sums.get(k, 0.0) + v
                        count += 1
                    images += self.cfg.batch_size
                    if self.step % self.cfg.log_every == 0 or self.step == self.total_steps:
                        result.update(self._log(logger, sums, count, images, clock.elapsed()))
                        sums, count, images = {}, 0, 0
                        clock.reset()
                    if fixed is not None and self.cfg.figure_every and self.step % self.cfg.figure_every == 0:
                        with clock.paused():
                            self._figure(fixed, logger)
                    saved = self.step % ckpt_every == 0 or self.step == self.total_steps
                    if saved:
                        self.save()
                    if self._stop_requested(received):
                        if not saved:
                            self.save()
                        raise TrainingInterrupted(received[0] if received else signal.SIGTERM, self.step,
                                                  self.run_dir)
                epoch_done = self.step // self.steps_per_epoch
                last = self.step == self.total_steps
                if self.evaluator and (last or (self.cfg.eval_every and epoch_done % self.cfg.eval_every == 0)):
                    with clock.paused():
                        result.update(self._evaluate(logger))
            if self.evaluator and finished:
                result.update(self._evaluate(logger))
            if fixed is not None:
                self._figure(fixed, logger)
            # A signal during the final evaluation or figure came after the last step's check: the caller must
            # still stop (the last step's checkpoint is saved).
            if self._stop_requested(received):
                raise TrainingInterrupted(received[0] if received else signal.SIGTERM, self.step, self.run_dir)
        result["skipped_steps"] = self.skipped
        return result

    def _print_plan(self) -> None:
        """The run's length and which setting set it, before the first step."""
        per_epoch = f"{self.steps_per_epoch} steps per epoch ({len(self.dataset)} frames)"
        why = (f"train.max_steps={self.cfg.max_steps}, {self.total_steps / self.steps_per_epoch:.3g} epochs of "
               f"{per_epoch}; train.epochs is not used" if self.cfg.max_steps else
               f"train.epochs={self.cfg.epochs} x {per_epoch}; train.max_steps=N sets a number of steps instead")
        print(f"training {self.total_steps} steps of {self.cfg.batch_size} frames ({why}) on {self.device}, "
              f"{self.precision}", flush=True)

    def _device_batch(self, batch):
        batch = self._to_device(batch)
        return self.batch_transform(batch) if self.batch_transform is not None else batch

    def _train_step(self, batches) -> dict[str, float] | None:
        """One optimizer step over ``accum_steps`` micro-batches; None when the NaN guard skipped it."""
        set_lr(self.optimizer, lr_at(self.step, peak=self.peak_lr, total=self.total_steps, warmup=self.warmup,
                                     cfg=self.optim_cfg, decay_from=self.decay_from))
        logged: dict[str, float] = {}
        ok = True
        for micro in range(self.cfg.accum_steps):
            batch = self._device_batch(next(batches))
            sync = micro == self.cfg.accum_steps - 1 or self.ddp is None
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                out = self.forward(batch)
            loss = out["loss"].float()
            # Every rank must agree before backward: a rank that skipped it would hang DDP's all-reduce.
            if not self._all_finite(loss.detach()):
                ok = False
                self._non_finite(batch, "loss")
                continue
            self.scaler.scale(loss / self.cfg.accum_steps).backward()
            for k, v in out.items():
                if k.startswith("loss") and isinstance(v, torch.Tensor) and v.ndim == 0:
                    logged[k] = logged.get(k, 0.0) + float(v.detach()) / self.cfg.accum_steps
        if ok:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            clip = self.optim_cfg.clip_grad if self.optim_cfg.clip_grad > 0 else float("inf")
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            # fp16: the scaler owns inf handling (it skips the step and lowers the scale).
            if self.precision != "fp16" and not torch.isfinite(norm):
                ok = False
                self._non_finite(None, "gradient norm")
            else:
                self.scaler.step(self.optimizer)
                self.scaler.update()
                logged["grad_norm"] = float(norm)
        self.optimizer.zero_grad(set_to_none=True)
        return logged if ok else None

    def _stop_requested(self, received: list[int]) -> bool:
        # Every rank must stop at the same step: the checkpoint is a collective, and a rank that went on alone
        # would wait forever in its next all-reduce.
        flag = torch.tensor([float(bool(received))], device=self.device)
        return bool(D.all_reduce_sum(flag).item() > 0)

    def _non_finite(self, batch, what: str) -> None:
        ids = batch.get("frame_id") if isinstance(batch, dict) else None
        msg = f"non-finite {what} at step {self.step + 1}" + (f" (frames: {list(ids)})" if ids is not None else "")
        if self.cfg.nan_policy == "stop":
            raise NonFiniteLossError(msg + "; train.nan_policy=stop. The last checkpoint predates this step.")
        self.skipped += 1
        if D.is_main():
            log.warning("%s: step skipped (%d so far)", msg, self.skipped)

    def _log(self, logger: RunLogger, sums: dict, count: int, images: int, seconds: float) -> dict:
        keys = sorted(sums)
        values = torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64, device=self.device)
        values = D.all_reduce_sum(values) if self.world > 1 else values
        n = max(values[-1].item(), 1.0)
        record = {k: values[i].item() / n for i, k in enumerate(keys)}
        record["lr"] = self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0)
        record["epoch"] = self.step / self.steps_per_epoch
        record["skipped_steps"] = self.skipped
        logger.log(self.step, record, images=images, seconds=seconds)
        return record

    def _fixed_batch(self) -> dict:
        # Drawn with its own seed so the figure batch neither depends on nor disturbs the training RNG stream.
        n = min(4, len(self.dataset))
        samples = [self.dataset[i] for i in range(n)]
        collate = self.collate_fn or torch.utils.data.default_collate
        return self._device_batch(collate(samples))

    def _figure(self, batch: dict, logger: RunLogger) -> None:
        path = self.run_dir / "figures" / f"step_{self.step:08d}.png"
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                torch.no_grad(), self._autocast():
            self.model.eval()
            self.visualizer(self.model, batch, path)
            self.model.train()
        logger.image("figures", path, self.step)

    def _evaluate(self, logger: RunLogger) -> dict:
        """Run the evaluator, log its metrics at this step and return them (as ``eval/<name>``)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), \
                torch.no_grad(), self._autocast():
            self.model.eval()
            metrics = self.evaluator(self.model)
            self.model.train()
        metrics = {k if k.startswith("eval/") else f"eval/{k}": float(v) for k, v in metrics.items()}
        logger.log(self.step, metrics)
        return metrics
