"""The demo pipeline end to end at smoke size (the real demo takes ~10 min, --quick ~2 min)."""
import json

from mask3d_vit.demo import run_demo
from smoke import COMPARISON_SMOKE


def test_demo_writes_the_comparison(tmp_path):
    result = run_demo(tmp_path, overrides=COMPARISON_SMOKE)
    assert [r["backbone"] for r in result["rows"]] == ["scratch", "Mask3D", "MAE-RGB"]
    report = (tmp_path / "results.md").read_text()
    for name in ("scratch", "Mask3D", "MAE-RGB"):
        assert f"| {name} |" in report
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    for row in rows:
        assert 0 <= row["seg/miou"] <= 100 and row["depth_probe/abs_rel"] > 0
    # The closed-form probe's floors are fit on the probe's frames without any backbone: the same in every row.
    floors = [{k: v for k, v in row.items() if k.startswith("depth_probe_floor/")} for row in rows]
    assert {"depth_probe_floor/constant/abs_rel", "depth_probe_floor/position/delta1"} <= set(floors[0])
    assert floors[1] == floors[0] == floors[2]
    assert f"position-only AbsRel {rows[0]['depth_probe_floor/position/abs_rel']:.3f}" in report
    for path in result["figures"].values():
        assert path.stat().st_size > 1000
    assert "reconstruction (Mask3D)" in result["figures"]
