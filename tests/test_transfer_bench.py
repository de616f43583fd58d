"""The evidence benchmark (benchmarks/transfer.py): its --quick form end to end, resuming, and its statistics."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

from mask3d_vit.config import load_config
from mask3d_vit.tasks.compare import CompareConfig, estimate_seconds, objective_variants, summarize

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_FRAMES = SHARED if (SHARED / "nyuv2_train_mini").is_dir() and (SHARED / "sunrgbd_kv2_mini").is_dir() else None
BACKBONES = ["scratch", "Mask3D", "MAE-RGB", "RGB+depth", "MAE-RGB → Mask3D", "MAE-RGB → MAE-RGB"]


def _load_script():
    spec = importlib.util.spec_from_file_location("transfer_bench", ROOT / "benchmarks" / "transfer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``python benchmarks/transfer.py --quick`` (with the real-frames part where the sample frames exist)."""
    bench = _load_script()
    tmp = tmp_path_factory.mktemp("transfer")
    args = ["--quick", "--out", str(tmp / "runs"), "--report", str(tmp / "docs" / "results.md"),
            "--shared", str(REAL_FRAMES or tmp / "absent")]
    bench._main(args)
    return bench, tmp, args


def test_quick_protocol_writes_the_report(quick):
    bench, tmp, _ = quick
    result = json.loads((tmp / "runs" / "results.json").read_text())
    rows = result["rows"]
    assert [(r["backbone"], r["seed"]) for r in rows] == [(b, s) for s in (0, 1) for b in BACKBONES]
    for r in rows:
        assert 0 <= r["seg/miou"] <= 100 and 0 <= r["seg@50%/miou"] <= 100 and r["depth_probe/abs_rel"] > 0
        assert 0 <= r["seg_probe/miou"] <= 100 and 0 <= r["seg_probe_floor/position/miou"] <= 100
        assert r["depth_probe_floor/constant/abs_rel"] > 0
    # Seeds change the runs; the continued backbones start from their seed's MAE-RGB run.
    assert rows[1]["depth_probe/abs_rel"] != rows[7]["depth_probe/abs_rel"]
    continued = json.loads((Path(rows[4]["pretrain_run"]) / "result.json").read_text())
    assert continued["config"]["init_from"] == rows[2]["pretrain_run"] and continued["config"]["train"]["max_steps"]
    assert "pretrain/rgb_reliance" in rows[1] and "pretrain/rgb_reliance" not in rows[2]
    assert result["ceiling"]["seg_ceiling/miou"] >= 0 and result["ceiling"]["depth_ceiling/abs_rel"] > 0

    text = (tmp / "docs" / "results.md").read_text()
    assert "| Mask3D | 2 |" in text and "seg mIoU, 50 % labels" in text and "Mask3D − MAE-RGB" in text
    assert "MAE-RGB → Mask3D − MAE-RGB → MAE-RGB" in text and "*floor: position-only (depth probe)*" in text
    assert "*ceiling: supervised fine-tuning, 3 steps*" in text and "## What this run shows" in text
    assert "over 1 invocation(s)" in text and "Command: `python benchmarks/transfer.py --quick" in text
    figures = tmp / "docs" / "figures"
    for name in ("transfer_segmentation.png", "transfer_data_efficiency.png", "transfer_probes.png",
                 "transfer_reconstruction_mask3d.png"):
        assert (figures / name).stat().st_size > 1000
    if REAL_FRAMES is not None:
        real = result["real_rows"]
        assert [r["backbone"] for r in real[:6]] == BACKBONES
        assert all(r["sim2real/frames"] == 1 and r["depth_probe/abs_rel"] > 0 for r in real)
    else:
        assert "Skipped: `../shared/data` is absent" in text


def test_rerun_keeps_finished_runs_and_redoes_changed_ones(quick):
    bench, tmp, args = quick
    results = sorted((tmp / "runs").glob("*/result.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    bench._main(args + ["seg.train.keep_ckpts=1"])  # everything finished, only bookkeeping changed: nothing runs
    assert {p: p.stat().st_mtime_ns for p in results} == before
    assert "over 2 invocation(s)" in (tmp / "docs" / "results.md").read_text()
    bench._main(args + ["seg_steps=[3,1]"])  # only the 50 % fine-tunings change
    changed = {p.parent.name for p in results if p.stat().st_mtime_ns != before[p]}
    assert changed == {f"seg_50pct-{b}-s{s}" for b in ("scratch", "mask3d", "mae-rgb", "rgb_depth",
                                                      "mae-rgb-then-mask3d", "mae-rgb-then-mae-rgb") for s in (0, 1)}


def test_out_that_is_not_a_protocol_is_refused(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(SystemExit, match="not empty and holds no protocol"):
        _load_script()._main(["--quick", "--out", str(tmp_path), "--real", "off"])


def test_paired_differences_and_calls():
    bench = _load_script()
    rows = [{"backbone": b, "seed": s, "m/miou": v, "d/abs_rel": a}
            for s, (v1, v2) in enumerate([(10.0, 8.0), (11.0, 8.5), (12.0, 9.5)])
            for b, v, a in (("Mask3D", v1, 0.40), ("scratch", v2, 0.40 + 0.01 * (s - 1)))]
    mean, half, n = bench.paired(rows, "Mask3D", "scratch", "m/miou")
    assert n == 3 and math.isclose(mean, 7 / 3) and math.isclose(half, 4.302653 * math.sqrt(1 / 12) / math.sqrt(3), rel_tol=1e-6)
    assert bench.call((mean, half, n), "m/miou") == "better"
    assert bench.call((-mean, half, n), "m/miou") == "worse"
    assert bench.call((-0.5, 0.1, 3), "d/abs_rel") == "better"  # lower AbsRel is better
    assert bench.call(bench.paired(rows, "Mask3D", "scratch", "d/abs_rel"), "d/abs_rel") == "within noise"
    assert math.isnan(bench.paired(rows[:2], "Mask3D", "scratch", "m/miou")[1])
    assert bench.paired(rows, "Mask3D", "MAE-RGB", "m/miou") is None


def test_summary_statistics_and_estimate():
    rows = [{"backbone": "a", "seed": s, "x": v} for s, v in enumerate((1.0, 2.0, 3.0))] + \
           [{"backbone": "b", "seed": 0, "x": 5.0}]
    a, b = summarize(rows)
    assert a["seeds"] == 3 and a["x"] == (2.0, 1.0)
    assert b["x"][0] == 5.0 and math.isnan(b["x"][1])
    cfg = load_config(CompareConfig, "transfer_cpu")
    variants = objective_variants(cfg.objectives, cfg)
    assert list(variants) == BACKBONES[1:]
    full = estimate_seconds(cfg, variants=variants)
    # Every run is per seed except the one-time frames and ceilings.
    no_ceiling = estimate_seconds(load_config(CompareConfig, "transfer_cpu", ["ceiling_steps=0"]), variants=variants)
    one_seed = estimate_seconds(load_config(CompareConfig, "transfer_cpu", ["seeds=[0]", "ceiling_steps=0"]),
                                variants=variants)
    assert math.isclose(no_ceiling["total"] - no_ceiling["frames"], 5 * (one_seed["total"] - one_seed["frames"]))
    assert full["seg"] > no_ceiling["seg"]
    # Each variant is priced with its own overrides: one that pre-trains 4x longer costs ~4x the pre-training.
    longer = estimate_seconds(cfg, variants={"Mask3D": ["train.epochs=4"]})
    shorter = estimate_seconds(cfg, variants={"Mask3D": []})
    assert 3.5 < longer["pretrain"] / shorter["pretrain"] < 4.0
    assert longer["seg"] == shorter["seg"]
    # A Mask3D step (every colour patch encoded) costs more than an MAE step (a quarter of them).
    mae = estimate_seconds(cfg, variants={"MAE-RGB": variants["MAE-RGB"]})
    assert 2.0 < shorter["pretrain"] / mae["pretrain"] < 5.0
    assert 60 * 60 < full["total"] < 95 * 60, "the default protocol must fit the ~90-minute CPU budget"


def test_scale_multiplies_frames_and_steps_not_epochs():
    bench = _load_script()
    cfg = load_config(CompareConfig, bench.RECIPE)
    big = bench.scaled(cfg, 4)
    for run in ("pretrain", "seg", "depth_probe", "seg_probe"):
        small, large = getattr(cfg, run), getattr(big, run)
        assert [s.num_frames * 4 for s in small.data.sources] == [s.num_frames for s in large.data.sources]
        assert large.data.size == small.data.size
    assert big.pretrain.train.epochs == cfg.pretrain.train.epochs
    assert big.seg_steps == [4 * n for n in cfg.seg_steps] and big.continue_steps == 4 * cfg.continue_steps
    assert big.seg.eval.max_images == 4 * cfg.seg.eval.max_images
    assert big.depth_probe.max_images == 4 * cfg.depth_probe.max_images
    # so the scaled protocol costs ~4x on the same machine, less each run's fixed overhead (a GPU brings it back to
    # the CPU run's wall time)
    variants = objective_variants(cfg.objectives, cfg)
    ratio = estimate_seconds(big, variants=variants)["total"] / estimate_seconds(cfg, variants=variants)["total"]
    assert 3.2 < ratio < 4.1


def test_continued_variants_need_their_base():
    from mask3d_vit.config import ConfigError
    cfg = load_config(CompareConfig, "transfer_cpu", ["objectives=[depth]"])
    with pytest.raises(ConfigError, match="continue_from='rgb' must be one of the objectives"):
        objective_variants(cfg.objectives, cfg)
    with pytest.raises(ConfigError, match="continue_steps=0"):
        objective_variants(["rgb"], load_config(CompareConfig, "transfer_cpu", ["continue_steps=0"]))


def test_t_quantile_is_exact_for_every_degree_of_freedom():
    bench = _load_script()
    # Student's t, two-sided 95 %: df 11-14 lay between the old table's rows and took the narrower df 15 value.
    for df, quantile in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (11, 2.2010), (12, 2.1788), (13, 2.1604),
                         (14, 2.1448), (40, 2.0211), (1000, 1.9623)):
        assert math.isclose(bench.t95(df), quantile, abs_tol=5e-5), df
