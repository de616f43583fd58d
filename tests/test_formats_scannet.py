"""ScanNet: a .sens file written to the documented layout, exported frame folders with label-filt, frames_25k."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mask3d_vit.config import ConfigError
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.classes import SCANNET20, SCANNET20_NYU40_IDS
from mask3d_vit.data.formats.scannet import ScanNetFrames, ScanNetSens, open_scannet
from mask3d_vit.io import write_png

DH, DW = 12, 16      # depth resolution
CH, CW = 24, 32      # colour resolution (2x, as ScanNet's 1296x968 vs 640x480 but smaller)


def depth_of(i):
    return (np.full((DH, DW), 1000 + 10 * i)).astype(np.uint16)  # 1.0 m + 1 cm per frame


def write_sens(path, n=30, *, truncate=False):
    """A ScanNet SensorData v4 file: JPEG colour at CH x CW, zlib depth at DH x DW (millimetres, shift 1000)."""
    k_color = np.array([[30, 0, 15.5, 0], [0, 30, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    k_depth = np.array([[15, 0, 7.5, 0], [0, 15, 5.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    eye = np.eye(4, dtype=np.float32)
    out = io.BytesIO()
    name = b"StructureSensor"
    out.write(struct.pack("<IQ", 4, len(name)) + name)
    for m in (k_color, eye, k_depth, eye):
        out.write(m.tobytes())
    out.write(struct.pack("<iiIIIIfQ", 2, 1, CW, CH, DW, DH, 1000.0, n))
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.full((CH, CW, 3), (8 * i) % 256, np.uint8)).save(buf, format="JPEG", quality=95)
        color, depth = buf.getvalue(), zlib.compress(depth_of(i).tobytes())
        out.write(eye.tobytes() + struct.pack("<QQQQ", i, i, len(color), len(depth)) + color + depth)
    data = out.getvalue()
    path.write_bytes(data[: len(data) - 50] if truncate else data)
    return path


def test_sens_frames_with_frame_skip(tmp_path):
    scene = tmp_path / "scene0000_00"
    scene.mkdir()
    write_sens(scene / "scene0000_00.sens")
    ds = open_scannet(tmp_path, split=None, frame_skip=10)
    assert isinstance(ds, ScanNetSens) and len(ds) == 3
    s = ds[1]
    assert s["frame_id"] == "scene0000_00_000010"
    assert s["rgb"].shape == (3, DH, DW), "colour is resized to the depth resolution"
    assert abs(int(s["rgb"].float().mean()) - 80) <= 2
    assert np.allclose(s["depth"].numpy(), 1.1) and s["valid"].all()
    assert s["intrinsics"].tolist() == pytest.approx([15, 15, 7.5, 5.5])
    assert len(open_scannet(tmp_path / "scene0000_00" / "scene0000_00.sens", split=None)) == 2  # 0 and 25


def test_sens_split_lists_and_errors(tmp_path):
    for name in ("scene0000_00", "scene0001_00"):
        write_sens(tmp_path / f"{name}.sens", n=5)
    with pytest.raises(FileNotFoundError, match="scannetv2_train.txt: scene list of split 'train' not found"):
        open_scannet(tmp_path, split="train")
    (tmp_path / "scannetv2_train.txt").write_text("scene0001_00\n")
    ds = open_scannet(tmp_path, split="train", frame_skip=1)
    assert len(ds) == 5 and ds[0]["frame_id"].startswith("scene0001_00")
    write_sens(tmp_path / "broken.sens", n=3, truncate=True)
    with pytest.raises(ValueError, match=r"broken\.sens: not a readable ScanNet \.sens file"):
        open_scannet(tmp_path / "broken.sens", split=None)


def write_scene(root, name, *, layout="export", frames=(0, 25, 50)):
    """An exported scene (color/ depth/ label-filt/ instance-filt/ intrinsic/) or a frames_25k scene."""
    scene = root / name
    label_dir, inst_dir = ("label-filt", "instance-filt") if layout == "export" else ("label", "instance")
    for i in frames:
        (scene / "color").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((CH, CW, 3), 100, np.uint8)).save(scene / "color" / f"{i}.jpg")
        write_png(scene / "depth" / f"{i}.png", depth_of(i))
        label = np.zeros((CH, CW), np.uint16)
        label[:, CW // 2:] = 5 if layout == "export" else 3  # raw id 5 -> nyu40 3 (cabinet); 25k stores nyu40
        label[: CH // 2, : CW // 2] = 7 if layout == "export" else 21  # raw 7 -> nyu40 21 (clothes): not in the 20
        write_png(scene / label_dir / f"{i}.png", label if layout == "export" else label.astype(np.uint8))
        inst = (label > 0).astype(np.uint8) * (1 + (np.arange(CW) >= CW // 2))[None]
        write_png(scene / inst_dir / f"{i}.png", inst.astype(np.uint8))
    k = "15 0 7.5 0\n0 15 5.5 0\n0 0 1 0\n0 0 0 1\n"
    if layout == "export":
        (scene / "intrinsic").mkdir()
    (scene / ("intrinsic/intrinsic_depth.txt" if layout == "export" else "intrinsics_depth.txt")).write_text(k)
    return scene


TSV = "id\traw_category\tcategory\tcount\tnyu40id\tnyu40class\n5\tcabinet\tcabinet\t1\t3\tcabinet\n" \
      "7\tjacket\tjacket\t1\t21\tclothes\n"


@pytest.mark.parametrize("layout", ["export", "frames_25k"])
def test_scene_folders_map_labels_to_scannet20(tmp_path, layout):
    write_scene(tmp_path, "scene0000_00", layout=layout)
    if layout == "export":
        with pytest.raises(FileNotFoundError, match="scannetv2-labels.combined.tsv: needed"):
            open_scannet(tmp_path, split=None)[0]
        (tmp_path / "scannetv2-labels.combined.tsv").write_text(TSV)
    ds = open_scannet(tmp_path, split=None, frame_skip=25, require_labels=True)
    assert isinstance(ds, ScanNetFrames) and len(ds) == 3
    s = ds[2]
    assert s["frame_id"] == "scene0000_00_50" and s["rgb"].shape == (3, DH, DW)
    cabinet = SCANNET20.index("cabinet")
    assert cabinet == SCANNET20_NYU40_IDS.index(3) + 1
    assert (s["label"][:, DW // 2:] == cabinet).all(), "raw/NYU40 cabinet lands on ScanNet-20 cabinet"
    assert (s["label"][: DH // 2, : DW // 2] == 0).all(), "classes outside the 20 are ignored (0)"
    assert set(s["instance"].unique().tolist()) == {0, 1, 2}
    assert np.allclose(s["depth"].numpy(), 1.5)
    assert s["intrinsics"].tolist() == pytest.approx([15, 15, 7.5, 5.5])
    assert len(open_scannet(tmp_path, split=None, frame_skip=50)) == 2


def test_scene_folder_problems_are_reported(tmp_path):
    scene = write_scene(tmp_path, "scene0000_00", layout="frames_25k")
    (scene / "depth" / "25.png").unlink()
    Image.fromarray(np.zeros((CH, CW + 9, 3), np.uint8)).save(scene / "color" / "50.jpg")
    ds = open_scannet(tmp_path, split=None)
    assert any("25.jpg: no matching depth/25.png" in p for p in ds.problems) and len(ds) == 2
    with pytest.raises(ValueError, match=r"50\.jpg: 41x24 does not match the frame's 16x12"):
        ds[1]


def test_scannet_through_the_factory(tmp_path):
    write_scene(tmp_path, "scene0000_00", layout="frames_25k")
    (tmp_path / "scannetv2_val.txt").write_text("scene0000_00\n")
    cfg = DataConfig(sources=[SourceConfig(format="scannet", root=str(tmp_path))], size=(8, 8))
    ds = build_dataset(cfg, split="val", train=False, require_labels=True)
    assert len(ds) == 3 and ds[0]["label"].shape == (8, 8) and int(ds[0]["label"].max()) <= 20
    with pytest.raises(ConfigError, match="only nyuv2 sources choose a class set"):
        build_dataset(DataConfig(sources=[SourceConfig(format="scannet", root=str(tmp_path), class_set="nyu40")]))
