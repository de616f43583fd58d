"""The evidence benchmark's protocol (benchmarks/transfer.py) end to end at smoke size; the real run takes ~45 min."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

from mask3d_vit.config import load_config
from mask3d_vit.tasks.compare import CompareConfig, estimate_seconds, objective_variants, summarize
from smoke import COMPARISON_SMOKE

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

SMOKE = ["objectives=[depth, rgb]", "seeds=[0, 1]", "fractions=[1.0, 0.5]", *COMPARISON_SMOKE]


def _load_script():
    spec = importlib.util.spec_from_file_location("transfer_bench", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REAL_FRAMES = SHARED if (SHARED / "nyuv2_train_mini").is_dir() and (SHARED / "sunrgbd_kv2_mini").is_dir() else None


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    """One smoke-size run of the protocol (with the real-frames part where the sample frames exist)."""
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE, SMOKE)
    tmp_path = tmp_path_factory.mktemp("transfer")
    result = bench.run_transfer(tmp_path / "runs", cfg=cfg, shared=REAL_FRAMES, log=lambda line: None)
    return bench, cfg, result, tmp_path


def test_transfer_protocol_and_report(transfer):
    bench, cfg, result, tmp_path = transfer
    rows = result["rows"]
    assert [(r["backbone"], r["seed"]) for r in rows] == [(b, s) for s in (0, 1) for b in ("scratch", "Mask3D", "MAE-RGB")]
    for r in rows:
        assert 0 <= r["seg/miou"] <= 100 and 0 <= r["seg@50%/miou"] <= 100 and r["depth_probe/abs_rel"] > 0
        assert 0 <= r["depth_probe/delta1_med"] <= 100
        assert 0 <= r["depth_probe_floor/position/delta1"] <= 100 and r["depth_probe_floor/constant/abs_rel"] > 0
    # Rows are saved as each backbone finishes (a stopped run keeps them), the last write holds them all.
    saved = json.loads((tmp_path / "runs" / "rows.json").read_text())["rows"]
    assert [(r["backbone"], r["seed"]) for r in saved] == [(r["backbone"], r["seed"]) for r in rows]
    # Seeds change the runs: two seeds of one backbone must not give the same numbers.
    assert rows[1]["depth_probe/abs_rel"] != rows[4]["depth_probe/abs_rel"]
    mean, std = next(e for e in result["summary"] if e["backbone"] == "Mask3D")["seg/miou"]
    assert math.isclose(mean, (rows[1]["seg/miou"] + rows[4]["seg/miou"]) / 2) and std >= 0

    report = tmp_path / "docs" / "results.md"
    text = bench.write_report(result, cfg, command="python benchmarks/transfer.py ...", out=tmp_path / "runs",
                              report=report, estimate="~1 min", real_note="note")
    assert "| Mask3D | 2 |" in text and "seg mIoU (50 % labels)" in text and "Mask3D vs MAE-RGB" in text
    assert f"position-only AbsRel {rows[0]['depth_probe_floor/position/abs_rel']:.3f}" in text
    for name in ("transfer_metrics.png", "transfer_data_efficiency.png"):
        assert (report.parent / "figures" / name).stat().st_size > 1000
    # --real only rewrites the real-frames section alone and keeps the comparison above it.
    rewritten = bench.replace_real_section(report, rows[:1], "new note")
    assert rewritten.startswith(text.split(bench.REAL_HEADING)[0].rstrip("\n"))
    assert rewritten.count(bench.REAL_HEADING) == 1 and "new note" in rewritten and "\nnote\n" not in rewritten
    assert report.read_text() == rewritten
    # A later run without the real-frames part (--real off) keeps that section as it is.
    again = bench.write_report(result | {"real_rows": []}, cfg, command="python benchmarks/transfer.py --real off",
                               out=tmp_path / "runs", report=report, estimate="~1 min", real_note="Skipped")
    assert again.count(bench.REAL_HEADING) == 1 and "new note" in again and "Skipped" not in again


def test_transfer_real_frames_rows(transfer):
    if REAL_FRAMES is None:
        pytest.skip(f"real sample frames (nyuv2_train_mini, sunrgbd_kv2_mini) not present at {SHARED} "
                    f"(developer-only data)")
    real = transfer[2]["real_rows"]
    assert [r["backbone"] for r in real] == ["scratch", "Mask3D", "MAE-RGB"]
    for r in real:
        assert r["sim2real/frames"] == 1 and 0 <= r["sim2real/miou"] <= 100 and r["depth_probe/abs_rel"] > 0


def test_summary_statistics_and_estimate():
    rows = [{"backbone": "a", "seed": s, "x": v} for s, v in enumerate((1.0, 2.0, 3.0))] + \
           [{"backbone": "b", "seed": 0, "x": 5.0}]
    a, b = summarize(rows)
    assert a["seeds"] == 3 and a["x"] == (2.0, 1.0)
    assert b["x"][0] == 5.0 and math.isnan(b["x"][1])
    cfg = load_config(CompareConfig, "transfer_cpu")
    variants = objective_variants(cfg.objectives)
    full = estimate_seconds(cfg, variants=variants)
    one_seed = estimate_seconds(load_config(CompareConfig, "transfer_cpu", ["seeds=[0]"]), variants=variants)
    assert math.isclose(full["total"], 3 * one_seed["total"])
    # Each variant is priced with its own overrides: one that pre-trains 4x longer costs ~4x the pre-training.
    longer = estimate_seconds(cfg, variants={"Mask3D": ["train.epochs=64"]})
    shorter = estimate_seconds(cfg, variants={"Mask3D": []})
    assert 3.5 < longer["pretrain"] / shorter["pretrain"] < 4.0
    assert longer["seg"] == shorter["seg"]
    assert 20 * 60 < full["total"] < 45 * 60, "the default protocol must fit the 45-minute CPU budget"


def test_scale_multiplies_frames_not_epochs():
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE)
    big = bench.scaled(cfg, 4)
    for run in ("pretrain", "seg", "depth_probe"):
        small, large = getattr(cfg, run), getattr(big, run)
        assert [s.num_frames * 4 for s in small.data.sources] == [s.num_frames for s in large.data.sources]
        assert large.data.size == small.data.size
    assert big.pretrain.train.epochs == cfg.pretrain.train.epochs and big.seg.train.epochs == cfg.seg.train.epochs
    assert big.seg.eval.max_images == 4 * cfg.seg.eval.max_images
    assert big.depth_probe.max_images == 4 * cfg.depth_probe.max_images
    # so the scaled protocol costs ~4x on the same machine (a GPU brings it back to the CPU run's wall time)
    variants = objective_variants(cfg.objectives)
    ratio = estimate_seconds(big, variants=variants)["total"] / estimate_seconds(cfg, variants=variants)["total"]
    assert 3.5 < ratio < 4.1
