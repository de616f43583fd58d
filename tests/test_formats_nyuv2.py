"""NYUv2: a v7.3 .mat written with h5py in the official (transposed) layout, the PNG layout, the packaged tables."""
from pathlib import Path

import numpy as np
import pytest

from mask3d_vit.data.formats.nyuv2 import NUM_LABELED, NYUv2Mat, label_lut, open_nyuv2, tables, unique_instances

h5py = pytest.importorskip("h5py", reason="h5py (the datasets extra) is not installed")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
H, W = 6, 8


def write_labeled_mat(path, n=NUM_LABELED):
    """A tiny nyu_depth_v2_labeled.mat: MATLAB v7.3 stores (H, W, C, N) arrays, which HDF5 shows reversed."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (n, H, W)).astype(np.float32)
    labels = rng.integers(0, 895, (n, H, W)).astype(np.uint16)
    instances = rng.integers(0, 3, (n, H, W)).astype(np.uint8)
    with h5py.File(path, "w", userblock_size=512) as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)         # (N, 3, W, H)
        f["depths"] = depth.transpose(0, 2, 1)          # (N, W, H)
        f["rawDepths"] = np.where(depth > 5, 0, depth).transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
        f["instances"] = instances.transpose(0, 2, 1)
    return rgb, depth, labels, instances


@pytest.fixture(scope="module")
def labeled_mat(tmp_path_factory):
    path = tmp_path_factory.mktemp("nyu") / "nyu_depth_v2_labeled.mat"
    return path, write_labeled_mat(path)


def test_mat_frames_decode_untransposed_with_official_split(labeled_mat):
    path, (rgb, depth, labels, _) = labeled_mat
    train = open_nyuv2(path, split="train")
    assert isinstance(train, NYUv2Mat) and len(train) == 795
    assert len(open_nyuv2(path, split="val")) == len(open_nyuv2(path, split="test")) == 654
    index = train.frames[0]
    s = train[0]
    assert s["frame_id"] == f"{index:04d}" and s["rgb"].shape == (3, H, W)
    assert np.array_equal(s["rgb"].permute(1, 2, 0).numpy(), rgb[index - 1])
    assert np.allclose(s["depth"][0].numpy(), depth[index - 1])
    expected40 = np.asarray([0] + tables()["map894to40"])[labels[index - 1]]
    assert np.array_equal(s["label"].numpy(), expected40)
    assert s["label"].max() <= 40


def test_mat_nyu13_raw_depth_and_instances(labeled_mat):
    path, (_, depth, labels, _) = labeled_mat
    s = open_nyuv2(path, split=None, class_set="nyu13", raw_depth=True)[0]
    assert s["label"].max() <= 13
    assert np.array_equal(s["label"].numpy(), label_lut("nyu13")[labels[0]])
    assert not s["valid"][0][depth[0] > 5].any(), "raw depth keeps its holes"
    inst = s["instance"].numpy()
    for v in np.unique(inst[inst > 0]):
        assert len(np.unique(labels[0][inst == v])) == 1, "an instance never spans two raw classes"
    assert (inst[labels[0] == 0] == 0).all()


def test_unique_instances_separates_classes():
    raw = np.array([[1, 1, 2, 0]])
    inst = np.array([[1, 1, 1, 1]])
    assert unique_instances(raw, inst).tolist() == [[1, 1, 2, 0]]


def test_mat_errors_name_the_file(tmp_path):
    bad = tmp_path / "other.mat"
    with h5py.File(bad, "w") as f:
        f["images"] = np.zeros((2, 3, W, H), np.uint8)
    with pytest.raises(ValueError, match=r"other\.mat: no 'depths' array"):
        open_nyuv2(bad, split=None)
    small = tmp_path / "small.mat"
    write_labeled_mat(small, n=4)
    with pytest.raises(ValueError, match="holds 4 frames.*use split 'all'"):
        open_nyuv2(small, split="train")
    assert len(open_nyuv2(small, split=None)) == 4
    notmat = tmp_path / "notmat.mat"
    notmat.write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(ValueError, match="not a MATLAB v7.3"):
        open_nyuv2(notmat, split=None)


def test_tables_are_consistent():
    t = tables()
    assert len(t["train"]) == 795 and len(t["test"]) == 654 and not set(t["train"]) & set(t["test"])
    assert len(t["map894to40"]) == 894 and set(t["map894to40"]) <= set(range(1, 41))
    assert len(t["map40to13"]) == 40 and set(t["map40to13"]) == set(range(1, 14))


@pytest.mark.skipif(not (SHARED / "nyuv2_meta").is_dir(), reason=f"{SHARED}/nyuv2_meta is absent")
def test_packaged_tables_match_the_official_files():
    sio = pytest.importorskip("scipy.io")
    meta, t = SHARED / "nyuv2_meta", tables()
    splits = sio.loadmat(meta / "splits.mat")
    assert t["train"] == sorted(splits["trainNdxs"].ravel().tolist())
    assert t["test"] == sorted(splits["testNdxs"].ravel().tolist())
    assert t["map894to40"] == sio.loadmat(meta / "classMapping40.mat")["mapClass"].ravel().tolist()
    m13 = sio.loadmat(meta / "class13Mapping.mat")["classMapping13"][0, 0]["labels13"]
    assert t["map40to13"] == m13.ravel().tolist()


@pytest.mark.skipif(not (SHARED / "nyuv2_train_mini").is_dir(), reason=f"{SHARED}/nyuv2_train_mini is absent")
@pytest.mark.parametrize("class_set", ["nyu40", "nyu13"])
def test_real_png_frames(class_set):
    ds = open_nyuv2(SHARED / "nyuv2_train_mini", split="train", class_set=class_set)
    assert len(ds) == 10 and not ds.problems
    s = ds[0]
    assert s["frame_id"] == "0003" and s["rgb"].shape == (3, 480, 640)
    d = s["depth"][s["valid"]]
    assert 0.5 < float(d.median()) < 6.0 and float(d.max()) < 10.5, "millimetre PNGs decode to metres"
    top = 40 if class_set == "nyu40" else 13
    assert 0 < int(s["label"].max()) <= top and len(s["label"].unique()) > 3
    assert "label" not in ds[1], "only frame 0003 has labels in the sample"
    with pytest.raises(FileNotFoundError, match=r"label\d+/0004\.png: missing label map"):
        open_nyuv2(SHARED / "nyuv2_train_mini", split="train", class_set=class_set, require_labels=True)[1]
    with pytest.raises(ValueError, match="no frames found"):
        open_nyuv2(SHARED / "nyuv2_train_mini", split="test")
