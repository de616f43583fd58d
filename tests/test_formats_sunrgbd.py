"""SUN RGB-D: the original frame-folder layout with bit-rotated depth and seg.mat, the flat mirror layout."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_extra
from mask3d_vit.data.classes import SUN37
from mask3d_vit.data.formats.sunrgbd import SUNRGBD, decode_depth, sun37_id
from mask3d_vit.io import write_png

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
H, W = 10, 14


def encode_depth(mm):
    """SUN RGB-D's storage: rotate the 16-bit millimetre value left by 3 bits."""
    v = mm.astype(np.uint16)
    return (v << 3) | (v >> 13)


def write_frame(folder, mm, *, names=None):
    (folder / "image").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(folder / "image" / "0000001.jpg")
    write_png(folder / "depth_bfx" / "0000001.png", encode_depth(mm))
    write_png(folder / "depth" / "0000001.png", encode_depth(np.where(mm > 3000, 0, mm)))
    (folder / "intrinsics.txt").write_text("529.5 0 365\n0 529.5 265\n0 0 1\n")
    if names is not None:
        sio = require_extra("scipy.io")
        seglabel = np.zeros((H, W), np.uint16)
        seglabel[:, : W // 2] = 1
        seglabel[:, W // 2:] = 2
        seglabel[0, 0] = 3
        sio.savemat(folder / "seg.mat", {"seglabel": seglabel, "names": np.array([names], dtype=object)})


def test_depth_bit_rotation_roundtrip():
    mm = np.array([0, 1, 999, 2500, 8191], np.uint16)
    assert decode_depth(encode_depth(mm)).tolist() == mm.tolist()


def test_original_layout_depth_labels_and_split(tmp_path):
    mm = np.full((H, W), 2500, np.uint16)
    mm[:, -3:] = 3500
    write_frame(tmp_path / "kv2" / "kinect2data" / "000001_a", mm, names=["Chair", "night stand", "lamp shade"])
    write_frame(tmp_path / "kv1" / "NYUdata" / "NYU0002", mm)
    ds = SUNRGBD(tmp_path, split=None)
    assert len(ds) == 2 and ds.class_set == "sun37"
    s = ds[0]
    assert s["frame_id"] == "kv1_NYUdata_NYU0002" and "label" not in s
    s = ds[1]
    assert np.allclose(s["depth"][0, :, :2].numpy(), 2.5) and np.allclose(s["depth"][0, :, -1].numpy(), 3.5)
    assert s["intrinsics"].tolist() == pytest.approx([529.5, 529.5, 365, 265])
    assert s["label"][1, 0] == SUN37.index("chair") and s["label"][1, -1] == SUN37.index("night_stand")
    assert s["label"][0, 0] == 0, "names outside the 37 classes are unlabeled"
    raw = SUNRGBD(tmp_path, split=None, raw_depth=True)[1]
    assert not raw["valid"][0, :, -3:].any(), "raw depth keeps its holes"
    (tmp_path / "train.txt").write_text("kv2/kinect2data/000001_a\n")
    assert len(SUNRGBD(tmp_path, split="train")) == 1
    with pytest.raises(FileNotFoundError, match="test.txt.*allsplit.mat"):
        SUNRGBD(tmp_path, split="test")
    with pytest.raises(FileNotFoundError, match=r"NYU0002/seg\.mat: missing label map"):
        SUNRGBD(tmp_path, split=None, require_labels=True)[0]


def test_sun37_names():
    assert sun37_id("Refrigerator") == SUN37.index("fridge") and sun37_id("floor mat") == SUN37.index("floor_mat")
    assert sun37_id("wall") == 1 and sun37_id("mug") == 0


@pytest.mark.skipif(not (SHARED / "sunrgbd_toy").is_dir(), reason=f"{SHARED}/sunrgbd_toy is absent")
def test_real_original_layout():
    ds = SUNRGBD(SHARED / "sunrgbd_toy", split=None)
    assert len(ds) == 2 and not ds.problems
    for s in (ds[0], ds[1]):
        d = s["depth"][s["valid"]]
        assert 0.5 < float(d.median()) < 6.0 and float(d.max()) < 10.0, "bit-rotated depth decodes to metres"
        assert s["rgb"].shape[1:] == s["depth"].shape[1:]
    assert ds[1]["rgb"].shape == (3, 427, 561)


@pytest.mark.skipif(not (SHARED / "sunrgbd_kv2_mini").is_dir(), reason=f"{SHARED}/sunrgbd_kv2_mini is absent")
def test_real_flat_layout():
    ds = SUNRGBD(SHARED / "sunrgbd_kv2_mini", split="val")
    assert len(ds) == 15
    filled, raw = ds[0], SUNRGBD(SHARED / "sunrgbd_kv2_mini", split="val", raw_depth=True)[0]
    assert 0.5 < float(filled["depth"][filled["valid"]].median()) < 6.0
    assert raw["valid"].float().mean() < filled["valid"].float().mean(), "raw depth has holes"
    with pytest.raises(FileNotFoundError, match="no such split folder"):
        SUNRGBD(SHARED / "sunrgbd_kv2_mini", split="test")
