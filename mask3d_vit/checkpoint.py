"""Checkpoints: atomic writes, last-K retention, safe loading, and fallback past a corrupt latest file.

Layout: ``<run_dir>/checkpoints/step_00001234.pt``. A checkpoint is a dict of tensors and plain Python data only
(``"model"``, ``"optimizer"``, ``"scaler"``, ``"step"``, ``"epoch"``, ``"rng"``, ``"config"``...), so it loads with
``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused.
"""
from __future__ import annotations

import logging
import pickle
import re
import zipfile
from pathlib import Path

import torch

from .io import atomic_save

log = logging.getLogger(__name__)
CKPT_DIR = "checkpoints"
_STEP = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step checkpoints of a run, newest first."""
    folder = Path(run_dir) / CKPT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_checkpoint(state: dict, run_dir: str | Path, step: int, keep: int = 3) -> Path:
    """Write ``state`` atomically as the step's checkpoint, then delete all but the newest ``keep``."""
    path = checkpoint_path(run_dir, step)
    atomic_save(path, lambda f: torch.save(state, f))
    if keep > 0:
        for old in list_checkpoints(run_dir)[keep:]:
            old.unlink(missing_ok=True)
    return path


def safe_torch_load(path: str | Path):
    """``torch.load`` onto the CPU with ``weights_only=True``; every failure names the file and the reason."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused: the file needs arbitrary unpickling, which could run code; only "
                              f"tensors and plain data are loaded (torch.load weights_only=True). Re-save its state "
                              f"dict alone (torch.save(model.state_dict(), path)) or convert it to .safetensors. "
                              f"Detail: {str(e)[:300]}") from None
    except (RuntimeError, EOFError, IndexError, ValueError, zipfile.BadZipFile, OSError) as e:
        # a short non-zip file fails inside the legacy unpickler with IndexError or ValueError
        raise CheckpointError(f"{path}: truncated or corrupt file ({type(e).__name__}: {e})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint safely onto the CPU; raises :class:`CheckpointError` naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state = safe_torch_load(path)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a mask3d-vit checkpoint (no 'model' entry)")
    return state


def load_latest(path: str | Path) -> tuple[Path, dict]:
    """A run dir -> its newest loadable checkpoint (corrupt newer ones are reported and skipped); a file -> itself."""
    path = Path(path)
    if path.is_file():
        return path, load_checkpoint(path)
    candidates = list_checkpoints(path)
    if not candidates:
        raise CheckpointError(f"{path}: no checkpoints found (expected {path / CKPT_DIR}/step_*.pt)")
    for candidate in candidates:
        try:
            return candidate, load_checkpoint(candidate)
        except CheckpointError as e:
            log.warning("skipping unusable checkpoint: %s", e)
    raise CheckpointError(f"{path}: every checkpoint is unusable (see warnings above)")
