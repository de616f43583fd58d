"""Cityscapes: depth from disparity and camera json, label ids -> train ids + 1, instances."""
import json

import numpy as np
import pytest
from PIL import Image

from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset, class_set_of
from mask3d_vit.data.classes import CITYSCAPES19
from mask3d_vit.data.formats.cityscapes import Cityscapes, disparity_to_depth
from mask3d_vit.io import write_png

H, W = 8, 16


def write_city(root, split="val", name="lindau_000000_000019", *, labels=True):
    city = name.split("_")[0]
    for kind in ("leftImg8bit", "camera"):
        (root / kind / split / city).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 120, np.uint8)).save(root / "leftImg8bit" / split / city /
                                                            f"{name}_leftImg8bit.png")
    disparity = np.full((H, W), 1 + 256 * 20, np.uint16)   # 20 px
    disparity[0] = 0                                      # invalid
    disparity[1] = 1                                      # zero disparity: infinitely far, invalid
    write_png(root / "disparity" / split / city / f"{name}_disparity.png", disparity)
    (root / "camera" / split / city / f"{name}_camera.json").write_text(json.dumps(
        {"extrinsic": {"baseline": 0.2}, "intrinsic": {"fx": 2000.0, "fy": 2000.0, "u0": 7.5, "v0": 3.5}}))
    if labels:
        ids = np.zeros((H, W), np.uint8)
        ids[:, :4] = 7      # road -> train id 0
        ids[:, 4:8] = 26    # car -> train id 13
        ids[:, 8:] = 4      # static -> ignored
        write_png(root / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", ids)
        inst = ids.astype(np.uint16)
        inst[:, 4:6], inst[:, 6:8] = 26000, 26001
        write_png(root / "gtFine" / split / city / f"{name}_gtFine_instanceIds.png", inst)


def test_disparity_to_depth():
    depth = disparity_to_depth(np.array([0, 1, 257, 1 + 256 * 20], np.uint16), baseline=0.2, fx=2000.0)
    assert depth.tolist() == pytest.approx([0, 0, 400.0, 20.0])


def test_frames_depth_labels_instances(tmp_path):
    write_city(tmp_path)
    s = Cityscapes(tmp_path, split="val")[0]
    assert s["frame_id"] == "lindau_000000_000019"
    assert np.allclose(s["depth"][0, 2:].numpy(), 20.0) and not s["valid"][0, :2].any()
    assert s["label"][0, 0] == CITYSCAPES19.index("road") == 1
    assert s["label"][0, 5] == CITYSCAPES19.index("car") and s["label"][0, 10] == 0
    assert s["instance"][0, 4] != s["instance"][0, 7] and s["instance"][0, 0] == 0 and s["instance"].max() == 2
    assert s["intrinsics"].tolist() == pytest.approx([2000, 2000, 7.5, 3.5])


def test_missing_partners_and_labels(tmp_path):
    write_city(tmp_path, split="train", labels=False)
    write_city(tmp_path, split="train", name="aachen_000001_000019", labels=False)
    (tmp_path / "camera/train/aachen/aachen_000001_000019_camera.json").unlink()
    ds = Cityscapes(tmp_path, split="train")
    assert len(ds) == 1 and "aachen_000001_000019_camera.json" in ds.problems[0]
    with pytest.raises(FileNotFoundError, match="gtFine/train: labels are required"):
        Cityscapes(tmp_path, split="train", require_labels=True)


def test_cityscapes_through_the_factory(tmp_path):
    write_city(tmp_path)
    cfg = DataConfig(sources=[SourceConfig(format="cityscapes", root=str(tmp_path))], size=(8, 8), max_depth=80.0)
    s = build_dataset(cfg, split="val", train=False, require_labels=True)[0]
    assert s["label"].shape == (8, 8) and class_set_of(cfg) == "cityscapes19"
    assert 19 < float(s["depth"][s["valid"]].median()) < 21
