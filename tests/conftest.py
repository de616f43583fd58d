import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# tests/ holds helper modules (toy models) that subprocess workers import as well.
sys.path.insert(0, str(Path(__file__).parent))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# The optional extras of pyproject.toml, by the module a test needs from them.
EXTRAS = {"h5py": "datasets", "scipy.io": "datasets", "pycocotools": "det", "litdata": "packed",
          "zstandard": "packed"}


def require_extra(module: str):
    """Import ``module`` of an optional extra, or skip the calling test with a reason naming the extra.

    Args:
        module: a key of ``EXTRAS``.
    """
    extra = EXTRAS[module]
    return pytest.importorskip(module, reason=f"{module} is not installed (the '{extra}' extra: "
                                              f"pip install -e '.[{extra}]')")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample frames not present at {SHARED_DATA} (developer-only data)")
    return SHARED_DATA


def finish(proc, timeout: float = 600) -> str:
    """Wait for ``proc`` (started with ``start_new_session=True``), assert it succeeded, return its output; on a
    timeout kill its whole session, so torchrun workers do not live on holding cores and sockets."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"no result in {timeout} s:\n{out}") from None
    assert proc.returncode == 0, out
    return out
