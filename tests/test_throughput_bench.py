"""benchmarks/pretrain_throughput.py at smoke size, without the optional Hugging Face peer (not a test dependency)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mask3d_vit.engine import trainer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "pretrain_throughput.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("pretrain_throughput", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_encoder_alone_bound_trains_only_the_encoder():
    bench = load_bench()
    module, loss_fn = bench.encoder_alone((32, 32), 2, torch.device("cpu"), "fp32")
    loss_fn(module).backward()
    with_grad = {n.split(".")[1] for n, p in module.named_parameters() if p.grad is not None}
    assert with_grad == {"encoder"}


def test_benchmark_runs_and_reports_ours_against_a_bound(tmp_path):
    out = tmp_path / "thr.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--size", "32", "--batch", "2", "--steps", "1", "--rounds", "1",
                          "--device", "cpu", "--precisions", "fp32", "--models", "fusion=add,encoder alone", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["mask3d-vit (fusion=add)", "bound: encoder alone"]
    ours, bound = rows
    # The bound is a strict part of our step: fewer FLOPs, and both memory figures are measured.
    assert 0 < bound["gflop_per_step"] < ours["gflop_per_step"]
    assert all(r["img_per_s"] > 0 and r["peak_mem_mb"] > 0 for r in rows)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_rows_only_where_the_cpu_has_native_bf16(monkeypatch, native):
    # The smoke run above pins fp32; which precisions run by default is pinned here, for both kinds of CPU.
    monkeypatch.setattr(trainer, "_cpu_has_bf16", lambda: native)
    expected = ("fp32", "bf16") if native else ("fp32",)
    assert load_bench().default_precisions(torch.device("cpu")) == expected
