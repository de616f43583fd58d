"""benchmarks/pretrain_throughput.py at smoke size, without the optional Hugging Face peer (not a test dependency)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "pretrain_throughput.py"


def test_encoder_alone_bound_trains_only_the_encoder():
    spec = importlib.util.spec_from_file_location("pretrain_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    module, loss_fn = bench.encoder_alone(32, 2, torch.device("cpu"), "fp32")
    loss_fn(module).backward()
    with_grad = {n.split(".")[1] for n, p in module.named_parameters() if p.grad is not None}
    assert with_grad == {"encoder"}


def test_benchmark_runs_and_reports_ours_against_a_bound(tmp_path):
    out = tmp_path / "thr.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--size", "32", "--batch", "2", "--steps", "1", "--rounds", "1",
                          "--device", "cpu", "--models", "fusion=add,encoder alone", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["mask3d-vit (fusion=add)", "bound: encoder alone"]
    ours, bound = rows
    # The bound is a strict part of our step: fewer FLOPs, and both memory figures are measured.
    assert 0 < bound["gflop_per_step"] < ours["gflop_per_step"]
    assert all(r["img_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in rows)
