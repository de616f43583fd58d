"""Generic RGB-D pairs: pairing by stem or by timestamp, depth scale, intrinsics file, real captures."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask3d_vit.data.formats.pairs import Pairs
from mask3d_vit.io import write_png

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_pair(root, rgb_stem, depth_stem, value, rgb_dir="rgb"):
    (root / rgb_dir).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / rgb_dir / f"{rgb_stem}.png")
    write_png(root / "depth" / f"{depth_stem}.png", np.full((6, 8), value, np.uint16))


def test_pairs_by_stem_with_scale_and_intrinsics(tmp_path):
    write_pair(tmp_path, "a", "a", 5000, rgb_dir="color")
    write_pair(tmp_path, "b", "c", 5000, rgb_dir="color")
    (tmp_path / "intrinsics.txt").write_text("100 101 3.5 2.5\n")
    ds = Pairs(tmp_path, depth_scale=5000)
    assert len(ds) == 1 and np.allclose(ds[0]["depth"].numpy(), 1.0)
    assert ds[0]["intrinsics"].tolist() == pytest.approx([100, 101, 3.5, 2.5])
    assert any("b.png: no depth image" in p for p in ds.problems) and any("c.png: no colour" in p for p in ds.problems)


def test_tum_style_timestamps_pair_within_max_dt(tmp_path):
    write_pair(tmp_path, "1305031102.175304", "1305031102.160407", 10000)
    write_pair(tmp_path, "1305031103.000000", "1305031102.900000", 10000)  # 0.1 s apart: no partner
    ds = Pairs(tmp_path, depth_scale=5000)
    assert len(ds) == 1 and np.allclose(ds[0]["depth"].numpy(), 2.0)
    assert ds[0]["intrinsics"].isnan().all(), "unknown intrinsics are NaN, not a guess"


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a colour folder"):
        Pairs(tmp_path, depth_scale=1000)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "depth").mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "depth" / "x.png")
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "rgb" / "x.png")
    with pytest.raises(ValueError, match=r"depth/x\.png: depth must be a 16-bit single-channel PNG"):
        Pairs(tmp_path, depth_scale=1000)[0]


@pytest.mark.skipif(not (SHARED / "icl_nuim_synthetic").is_dir(), reason=f"{SHARED}/icl_nuim_synthetic is absent")
def test_real_captures_in_millimetres():
    ds = Pairs(SHARED / "icl_nuim_synthetic" / "icl_nuim_livingroom1_micro", depth_scale=1000)
    assert len(ds) > 200 and not ds.problems
    s = ds[0]
    assert s["rgb"].shape == (3, 480, 640) and 0.5 < float(s["depth"][s["valid"]].median()) < 5.0
