"""Loss curves of a run's metrics.jsonl records."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_save
from .panels import pyplot


def loss_curve(records: list[dict], path: str | Path, keys: tuple[str, ...] | None = None,
               title: str = "") -> Path:
    """Plot ``loss*`` series (or ``keys``) of metrics.jsonl records against step, log-scaled if they span decades."""
    plt = pyplot()
    keys = keys or tuple(sorted({k for r in records for k in r if k.startswith("loss")}))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if key in r]
        if pts:
            ax.plot(*zip(*pts), label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
    return Path(path)
