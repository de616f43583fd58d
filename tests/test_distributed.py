"""Two gloo processes on CPU train exactly like one process with the same global batch, and stop together."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import finish

from mask3d_vit.checkpoint import list_checkpoints, load_latest
from mask3d_vit.engine.logger import read_metrics

HERE = Path(__file__).parent
# --standalone: the rendezvous binds a free port (localhost:0), so parallel test runs do not collide.
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def run(args, run_dir, *worker_args):
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    # Its own session: on a timeout the torchrun workers are killed with it instead of living on, holding cores
    # and sockets, until their 30-minute collective timeout.
    return finish(subprocess.Popen([sys.executable, *args, str(HERE / "ddp_worker.py"), str(run_dir), *worker_args],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True))


def test_two_gloo_processes_match_one(tmp_path):
    run([], tmp_path / "one")
    run(TORCHRUN, tmp_path / "two")
    one = [r["loss"] for r in read_metrics(tmp_path / "one") if "loss" in r]
    two = [r["loss"] for r in read_metrics(tmp_path / "two") if "loss" in r]
    assert len(one) == len(two) == 12
    # Gradients are averaged in a different order (all-reduce of per-rank means): equal to float32 rounding.
    torch.testing.assert_close(torch.tensor(two), torch.tensor(one), rtol=1e-5, atol=1e-6)
    a, b = load_latest(tmp_path / "one")[1]["model"], load_latest(tmp_path / "two")[1]["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    out = run(TORCHRUN, tmp_path, "--sigterm-rank1")
    assert "rank 0 stopped at step 3" in out and "rank 1 stopped at step 3" in out
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003.pt"]
    assert load_latest(tmp_path)[1]["world_size"] == 2
