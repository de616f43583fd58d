"""Run logging on rank 0: JSON-lines metrics, TensorBoard scalars, and a progress display with img/s and ETA."""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Iterator

from ..io import write_text
from .distributed import is_main

METRICS_FILE = "metrics.jsonl"


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_seconds(run_dir: str | Path, batch_size: int) -> float | None:
    """Seconds a run spent in training steps, from its ``metrics.jsonl``, however many invocations it took (a resumed
    run's log holds every step once): the steps since the previous training record, times ``batch_size``, over each
    record's img/s (steps trained after the last record before a stop count at the rate of the first record after
    the resume). Evaluations, start-up and checkpoint writing are left out. None when no record has img/s."""
    total, previous, found = 0.0, 0, False
    for record in read_metrics(run_dir):
        if "img_per_s" in record:  # evaluation records carry a step too, but the trainer counts images past them
            total += (record["step"] - previous) * batch_size / record["img_per_s"]
            previous, found = record["step"], True
    return total if found else None


class RunLogger:
    """Writes ``metrics.jsonl`` and ``tb/`` under the run dir; silent on ranks other than 0.

    Args:
        run_dir: the run directory.
        total_steps: optimizer steps in the whole run (for the ETA).
        start_step: first step of this process (after a resume); records past it are dropped from metrics.jsonl so
            a resumed run's log reads as if it had never stopped.
    """

    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int = 0):
        self.enabled = is_main()
        self.total, self.start_step = total_steps, start_step
        self.t0 = time.time()
        self.bar = None
        self.tb = None
        if not self.enabled:
            return
        self.path = Path(run_dir) / METRICS_FILE
        kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= start_step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: TensorBoard costs ~1 s to import
        self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start_step + 1 if start_step else None)
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def log(self, step: int, values: dict[str, float], *, images: int = 0, seconds: float = 0.0) -> None:
        """Record ``values`` at ``step``; ``images`` trained in ``seconds`` (of training time) give img/s."""
        if not self.enabled:
            return
        now = time.time()
        record = {"step": step, **{k: float(v) for k, v in values.items()}, "time": round(now - self.t0, 3)}
        if images:
            record["img_per_s"] = images / max(seconds, 1e-9)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k not in ("step", "time"):
                self.tb.add_scalar(k, v, step)
        done = step - self.start_step
        eta = (now - self.t0) / max(done, 1) * (self.total - step)
        shown = {k: f"{v:.4g}" for k, v in record.items() if k.startswith(("loss", "eval/", "img_per_s"))}
        if self.bar is not None:
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(step - self.bar.n)
        else:
            print(f"step {step}/{self.total} " + " ".join(f"{k}={v}" for k, v in shown.items())
                  + f" eta {_fmt(eta)}", flush=True)

    def image(self, tag: str, path: str | Path, step: int) -> None:
        """Send a PNG the run wrote (a figure) to TensorBoard's Images tab as ``tag`` at ``step``."""
        if not self.enabled:
            return
        import numpy as np
        from PIL import Image
        with Image.open(path) as image:
            self.tb.add_image(tag, np.asarray(image.convert("RGB")), step, dataformats="HWC")
        self.tb.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()


class TrainClock:
    """Training seconds since the last :meth:`reset`; time spent in :meth:`paused` blocks is left out, so img/s
    counts the training steps only, not the evaluations and figures between them."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - t


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
