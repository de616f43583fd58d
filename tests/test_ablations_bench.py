"""benchmarks/ablations.py planning: shared runs are found by resolved config, partial grids accumulate."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mask3d_vit.config import load_config
from mask3d_vit.tasks.compare import CompareConfig

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("ablations_bench", ROOT / "benchmarks" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_axes_then_full_grid_share_runs():
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE, [])
    todo, alias = bench.plan(cfg, ["rgb_mask", "depth_mask", "fusion"], done={})
    center = "rgb 0.75 / depth 0.75"  # the recipe itself: one run answers both axes and its own fusion setting
    default, other = ("fusion add", "fusion concat") if cfg.pretrain.model.fusion == "add" else ("fusion concat",
                                                                                                 "fusion add")
    assert sorted(todo) == sorted(["rgb 0.5 / depth 0.75", center, "rgb 0.9 / depth 0.75", "rgb 0.75 / depth 0.5",
                                   "rgb 0.75 / depth 0.9", other])
    assert alias[default] == center
    done = {name: {"overrides": overrides, "seg/miou": 1.0} for name, overrides in todo.items()}
    todo, _ = bench.plan(cfg, ["masking"], done=done)
    assert sorted(todo) == ["rgb 0.5 / depth 0.5", "rgb 0.5 / depth 0.9", "rgb 0.9 / depth 0.5",
                            "rgb 0.9 / depth 0.9"]
    table = bench.table("masking", done)
    assert table.count("\n| rgb ") == 9 and "| rgb 0.5 / depth 0.5 | - |" in table and "| 1.0 |" in table


def test_report_keeps_the_hand_written_decisions(tmp_path):
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE, [])
    report = tmp_path / "ablations.md"
    rows = {"fusion add": {"overrides": ["model.fusion=add"], "seg/miou": 12.0}}
    bench.write_report(rows, cfg, report, ["python benchmarks/ablations.py --grid fusion"])
    report.write_text(report.read_text() + f"\n{bench.DECISIONS}\n\nWe chose add.\n")
    rows["depth blocks 0"] = {"overrides": ["model.depth_blocks=0"], "seg/miou": 11.0}
    text = bench.write_report(rows, cfg, report, ["a", "b"])
    assert text.count(bench.DECISIONS) == 1 and text.rstrip().endswith("We chose add.")
    assert "| depth blocks 0 | 11.0 |" in text and "| fusion add | 12.0 |" in text


def test_variants_must_belong_to_the_grid(tmp_path, capsys):
    bench = _load_script()
    with pytest.raises(SystemExit, match="--variants rgb 0.5 / depth 0.75: not in grid fusion; choose from"):
        bench._main(["--grid", "fusion", "--variants", "rgb 0.5 / depth 0.75", "--dry-run", "--out", str(tmp_path)])
    bench._main(["--grid", "fusion", "--variants", "fusion add", "--dry-run", "--out", str(tmp_path)])
    assert "1 pre-training variants to run" in capsys.readouterr().out


def test_runs_keep_the_config_they_ran_with():
    """A run recorded under an older default is neither taken for the current recipe's run nor kept: it reruns."""
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE, [])
    old = load_config(CompareConfig, bench.RECIPE, ["pretrain.model.depth_mask_ratio=0.6"])
    done = {"depth blocks 2": {"overrides": ["model.depth_blocks=2"],
                               "pretrain_config": bench._identity(old, ["model.depth_blocks=2"])}}
    todo, alias = bench.plan(cfg, ["depth_branch"], done=done)
    assert sorted(todo) == ["depth blocks 0", "depth blocks 2"] and alias["depth blocks 2"] == "depth blocks 2"
    todo, alias = bench.plan(old, ["depth_branch"], done=done)
    assert list(todo) == ["depth blocks 0"]


def test_an_interrupted_invocation_keeps_its_finished_variants(tmp_path, monkeypatch):
    bench = _load_script()

    def first_then_stop(cfg, out, *, variants, scratch, log, on_row, transfer):
        name = next(iter(variants))
        on_row({"backbone": name, "seed": 0, "seg/miou": 12.5})
        raise KeyboardInterrupt  # the user (or a time limit) stops the second variant

    monkeypatch.setattr(bench, "run_comparison", first_then_stop)
    with pytest.raises(KeyboardInterrupt):
        bench._main(["--grid", "fusion", "--out", str(tmp_path), "--report", str(tmp_path / "r.md")])
    saved = bench.yaml.safe_load((tmp_path / "ablations.json").read_text())
    finished = [name for name, row in saved["rows"].items() if "seg/miou" in row]
    assert len(finished) == 1 and saved["rows"][finished[0]]["seg/miou"] == 12.5
    cfg = load_config(CompareConfig, bench.RECIPE, [])
    todo, _ = bench.plan(cfg, ["fusion"], done=saved["rows"])
    assert finished[0] not in todo and len(todo) == 1


def test_pretrain_only_rows_record_diagnostics_and_do_not_count_as_transfer_runs(tmp_path, monkeypatch):
    bench = _load_script()
    calls = []

    def pretrain_only(cfg, out, *, variants, scratch, log, on_row, transfer):
        calls.append((sorted(variants), scratch, transfer))
        for name in variants:
            on_row({"backbone": name, "seed": 0, "pretrain/rgb_reliance": 1.01, "pretrain/vs_interpolation": 0.9})

    monkeypatch.setattr(bench, "run_comparison", pretrain_only)
    bench._main(["--grid", "pretext", "--pretrain-only", "--out", str(tmp_path), "--report", str(tmp_path / "r.md")])
    assert calls == [(sorted(bench.GRIDS["pretext"]), False, False)]
    report = (tmp_path / "r.md").read_text()
    assert "| variant | rgb_reliance | vs_interpolation |" in report and "| 1.01 | 0.90 |" in report
    saved = bench.yaml.safe_load((tmp_path / "ablations.json").read_text())
    cfg = load_config(CompareConfig, bench.RECIPE, [])
    assert not bench.plan(cfg, ["pretext"], done=saved["rows"], transfer=False)[0]  # done for diagnostics
    assert len(bench.plan(cfg, ["pretext"], done=saved["rows"])[0]) == len(bench.GRIDS["pretext"])  # not transfer
