"""NYUv2: a v7.3 .mat written with h5py in the official (transposed) layout, the PNG layout, the packaged tables."""
from pathlib import Path

import numpy as np
import pytest

from conftest import require_extra
from mask3d_vit.data.formats.nyuv2 import NUM_LABELED, NYUv2Mat, open_nyuv2, tables, unique_instances

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
H, W = 6, 8
# Raw (894-class) ids planted in the first row of frame 1, with their classes in the official tables, by name:
# unlabeled, wall, floor, ceiling, chair, table, door, cabinet -> nyu40 ids and nyu13 ids (bed 1, books 2, ceiling 3,
# chair 4, floor 5, furniture 6, objects 7, picture 8, sofa 9, table 10, tv 11, wall 12, window 13).
RAW_ROW = [0, 21, 11, 4, 5, 19, 28, 3]
NYU40_ROW = [0, 1, 2, 22, 5, 7, 8, 3]
NYU13_ROW = [0, 12, 5, 3, 4, 10, 12, 6]  # a door counts as wall, a cabinet as furniture


def write_labeled_mat(path, n=NUM_LABELED):
    """A tiny nyu_depth_v2_labeled.mat: MATLAB v7.3 stores (H, W, C, N) arrays, which HDF5 shows reversed."""
    h5py = require_extra("h5py")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (n, H, W)).astype(np.float32)
    labels = rng.integers(0, 895, (n, H, W)).astype(np.uint16)
    labels[0, 0] = RAW_ROW
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
    assert s["label"][0].tolist() == NYU13_ROW
    assert open_nyuv2(path, split=None)[0]["label"][0].tolist() == NYU40_ROW
    assert s["label"].max() <= 13 and np.array_equal(s["label"].numpy() == 0, labels[0] == 0)
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
    h5py = require_extra("h5py")
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


def test_packaged_tables_match_the_official_files():
    """Entries copied by hand from the official files (splits.mat, classMapping40.mat, class13Mapping.mat)."""
    t = tables()
    assert t["train"][:5] == [3, 4, 5, 6, 7] and t["train"][-3:] == [1438, 1439, 1440]
    assert t["test"][:5] == [1, 2, 9, 14, 15] and t["test"][-3:] == [1447, 1448, 1449]
    raw_to_40 = {3: 3, 4: 22, 5: 5, 11: 2, 19: 7, 21: 1, 26: 29, 28: 8, 83: 6, 894: 40}  # ..., sofa, torah -> otherprop
    assert {raw: t["map894to40"][raw - 1] for raw in raw_to_40} == raw_to_40
    assert dict(zip(RAW_ROW[1:], NYU40_ROW[1:])).items() <= raw_to_40.items()
    # nyu40 1..40 -> nyu13, in nyu40 order: wall, floor, cabinet, bed, chair, sofa, table, door, window, bookshelf,
    # picture, counter, blinds, desk, shelves, curtain, dresser, pillow, mirror, floor mat, clothes, ceiling, books,
    # refrigerator, television, paper, towel, shower curtain, box, whiteboard, person, night stand, toilet, sink,
    # lamp, bathtub, bag, other structure, other furniture, other prop.
    assert t["map40to13"] == [12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5,
                              7, 3, 2, 6, 11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7]
    assert [t["map40to13"][c - 1] for c in NYU40_ROW[1:]] == NYU13_ROW[1:]


def test_packaged_tables_equal_the_official_files_in_full(shared_data):
    if not (shared_data / "nyuv2_meta").is_dir():
        pytest.skip(f"{shared_data / 'nyuv2_meta'} is absent (developer-only data)")
    sio = require_extra("scipy.io")
    meta, t = shared_data / "nyuv2_meta", tables()
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
