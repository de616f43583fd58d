import os
import sys
from pathlib import Path

import pytest
import torch

# tests/ holds helper modules (toy models) that subprocess workers import as well.
sys.path.insert(0, str(Path(__file__).parent))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample frames not present at {SHARED_DATA} (developer-only data)")
    return SHARED_DATA
