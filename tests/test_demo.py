"""The demo pipeline end to end at smoke size (the real demo takes ~10 min, --quick ~2 min)."""
import json

from mask3d_vit.demo import run_demo

SMOKE = []
for section in ("pretrain", "seg", "depth_probe"):
    SMOKE += [f"{section}.data.sources=[{{format: synthrooms, num_frames: 16, seed: 0}}]", f"{section}.data.size=[32,48]",
              f"{section}.model.encoder=vit_micro_patch16", f"{section}.model.img_size=[32,48]",
              f"{section}.train.epochs=1", f"{section}.train.batch_size=8", f"{section}.train.precision=fp32"]
SMOKE += ["pretrain.model.decoder_dim=32", "pretrain.model.depth_dim=32", "pretrain.val_batches=1",
          "seg.model.neck_channels=16", "seg.model.head_channels=16", "seg.eval.max_images=8",
          "depth_probe.eval.max_images=8"]


def test_demo_writes_the_comparison(tmp_path):
    result = run_demo(tmp_path, overrides=SMOKE)
    assert [r["backbone"] for r in result["rows"]] == ["scratch", "Mask3D", "MAE-RGB"]
    report = (tmp_path / "results.md").read_text()
    for name in ("scratch", "Mask3D", "MAE-RGB"):
        assert f"| {name} |" in report
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    for row in rows:
        assert 0 <= row["seg/miou"] <= 100 and row["depth_probe/abs_rel"] > 0
    for path in result["figures"].values():
        assert path.stat().st_size > 1000
    assert "reconstruction (Mask3D)" in result["figures"]
