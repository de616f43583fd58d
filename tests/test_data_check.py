"""`mask3d-vit data check` and `data convert`: every problem named with its file, resumable conversion."""
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_extra
from mask3d_vit.cli import build_parser, main
from mask3d_vit.data.build import SourceConfig
from mask3d_vit.data.check import check_source, detect_format
from mask3d_vit.data.classes import NYU13
from mask3d_vit.data.convert import convert
from mask3d_vit.data.frames import FramesDataset, FramesWriter
from mask3d_vit.io import write_png

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COLOUR = np.stack([np.full((6, 8), 200), np.full((6, 8), 120), np.arange(48).reshape(6, 8)], -1).astype(np.uint8)


def cli(*argv):
    args = build_parser().parse_args(["data", *argv])
    return args.func(args)


def broken_frames(root):
    """Four frames: one good, one truncated depth, one mis-sized label, one label outside nyu13; an orphan."""
    writer = FramesWriter(root, classes=list(NYU13), class_set="nyu13")
    rgb, depth, label = np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 2.0), np.ones((6, 8), np.int64)
    for fid in ("good", "trunc", "size", "range"):
        writer.write(fid, rgb, depth, intrinsics=(5, 5, 3.5, 2.5), label=label)
    writer.finish({"train": ["good", "trunc", "size", "range"]})
    (root / "depth" / "trunc.png").write_bytes((root / "depth" / "trunc.png").read_bytes()[:40])
    write_png(root / "label" / "size.png", np.ones((5, 8), np.uint8))
    write_png(root / "label" / "range.png", np.full((6, 8), 14, np.uint8))
    write_png(root / "depth" / "orphan.png", np.zeros((6, 8), np.uint16))
    return root


def test_check_names_every_problem_with_its_file(tmp_path, capsys):
    root = broken_frames(tmp_path / "f")
    report = check_source(SourceConfig(format="frames", root=str(root)))
    assert report.frames == 2 and len(report.errors) == 4
    text = "\n".join(report.errors)
    assert "orphan.png: no matching rgb" in text
    assert "trunc.png: unreadable image" in text
    assert "label map is (5, 8)" in text and str(root) in text
    assert "frame 'range': label ids [14] outside the class set nyu13" in text
    assert cli("check", str(root), "--quiet") == 1
    out = capsys.readouterr().out
    assert "ERROR" in out and "640x480" not in out and "8x6 (2)" in out


def test_check_warns_about_implausible_depth_units(tmp_path, capsys):
    writer = FramesWriter(tmp_path, depth_scale=1000.0)
    writer.write("a", COLOUR, np.full((6, 8), 2.0), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["a"]})
    assert cli("check", str(tmp_path), "--quiet") == 0
    assert cli("check", str(tmp_path), "--quiet", "--depth-scale", "1") == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "median depth is 2000 m" in out


def test_check_of_a_missing_folder_says_so(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope")]) == 1
    assert f"{tmp_path / 'nope'}: no such file or folder" in capsys.readouterr().err


def test_a_source_without_any_valid_depth_is_an_error(tmp_path, capsys):
    writer = FramesWriter(tmp_path, depth_scale=1000.0)
    for fid in ("a", "b"):
        writer.write(fid, COLOUR, np.zeros((6, 8)), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["a", "b"]})
    report = check_source(SourceConfig(format="frames", root=str(tmp_path)))
    assert report.frames == 2 and len(report.errors) == 1 and "none of the 2 frames read has valid depth" in \
        report.errors[0]
    assert cli("check", str(tmp_path), "--quiet") == 1
    writer.write("c", COLOUR, np.full((6, 8), 2.0), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["a", "b", "c"]})
    report = check_source(SourceConfig(format="frames", root=str(tmp_path)))
    assert not report.errors
    assert report.warnings == ["frame 'a': no valid depth at all", "frame 'b': no valid depth at all"]


def test_a_grayscale_colour_image_is_a_warning(tmp_path):
    writer = FramesWriter(tmp_path, depth_scale=1000.0)
    for fid in ("colour", "gray"):
        writer.write(fid, COLOUR, np.full((6, 8), 2.0), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["colour", "gray"]})
    Image.fromarray(COLOUR[..., 2]).save(tmp_path / "rgb" / "gray.png")  # an 8-bit single-channel file
    report = check_source(SourceConfig(format="frames", root=str(tmp_path)))
    assert report.frames == 2 and not report.errors
    assert len(report.warnings) == 1 and report.warnings[0].startswith("frame 'gray': the colour image is grayscale")


def test_nyuv2_without_the_datasets_extra_names_the_pip_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "nyu.mat").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    assert main(["data", "convert", "nyuv2", str(tmp_path / "nyu.mat"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'mask3d-vit[datasets]'" in err and "Traceback" not in err


def test_detect_format(tmp_path):
    (tmp_path / "leftImg8bit").mkdir()
    assert detect_format(tmp_path) == "cityscapes"
    (tmp_path / "x.sens").touch()
    assert detect_format(tmp_path / "x.sens") == "scannet"
    with pytest.raises(ValueError, match="pass --format"):
        detect_format(tmp_path / "leftImg8bit")


def test_convert_nyuv2_mat_to_frames_resumes(tmp_path):
    require_extra("h5py")
    from test_formats_nyuv2 import write_labeled_mat

    mat = tmp_path / "labeled.mat"
    rgb, depth, labels, _ = write_labeled_mat(mat, n=5)
    out = tmp_path / "frames"
    assert cli("convert", "nyuv2", str(mat), "--out", str(out), "--class-set", "nyu13", "--splits", "all",
               "--quiet") == 0
    frames = FramesDataset(out, None, require_labels=True)
    assert len(frames) == 5 and frames.class_set == "nyu13"
    s = frames[2]
    assert s["frame_id"] == "0003" and np.array_equal(s["rgb"].permute(1, 2, 0).numpy(), rgb[2])
    assert np.allclose(s["depth"][0].numpy(), depth[2], atol=6e-4), "millimetre storage"
    assert int(s["label"].max()) <= 13 and "instance" in s
    removed, kept = out / "rgb" / "0001.png", out / "rgb" / "0005.png"
    stamp = kept.stat().st_mtime_ns
    removed.unlink()
    (out / "depth" / "0004.png").unlink()
    convert(SourceConfig(format="nyuv2", root=str(mat), class_set="nyu13"), out, splits=("all",))
    assert removed.is_file() and (out / "depth" / "0004.png").is_file(), "missing files are written again"
    assert kept.stat().st_mtime_ns == stamp, "complete frames are not rewritten when resuming"
    report = check_source(SourceConfig(format="frames", root=str(out)))
    assert not report.errors and report.labelled == 5


def test_convert_writes_split_lists(tmp_path):
    from test_formats_scannet import write_scene

    src = tmp_path / "scannet"
    write_scene(src, "scene0000_00", layout="frames_25k")
    write_scene(src, "scene0001_00", layout="frames_25k", frames=(0,))
    (src / "scannetv2_train.txt").write_text("scene0000_00\n")
    (src / "scannetv2_val.txt").write_text("scene0001_00\n")
    convert(SourceConfig(format="scannet", root=str(src)), tmp_path / "out")
    assert FramesDataset(tmp_path / "out", "train").ids == ["scene0000_00_0", "scene0000_00_25", "scene0000_00_50"]
    val = FramesDataset(tmp_path / "out", "val", require_labels=True)
    assert val.ids == ["scene0001_00_0"] and val.class_set == "scannet20" and "label" in val[0]


def test_convert_sunrgbd_flat_layout_takes_its_own_split_folders(tmp_path):
    from test_formats_sunrgbd import encode_depth

    src = tmp_path / "sun"
    for split, ids in (("train", ("1", "2")), ("val", ("3",))):
        for fid in ids:
            write_png(src / split / "rgb" / f"{fid}.png", np.full((6, 8, 3), 90, np.uint8))
            write_png(src / split / "depth" / f"{fid}.png", encode_depth(np.full((6, 8), 2000)))
    assert cli("convert", "sunrgbd", str(src), "--out", str(tmp_path / "out"), "--quiet") == 0
    assert FramesDataset(tmp_path / "out", "train").ids == ["1", "2"]
    assert FramesDataset(tmp_path / "out", "val").ids == ["3"]


@pytest.mark.skipif(not (SHARED / "sunrgbd_toy").is_dir(), reason=f"{SHARED}/sunrgbd_toy is absent")
def test_convert_and_check_real_frames(tmp_path):
    out = tmp_path / "sun"
    convert(SourceConfig(format="sunrgbd", root=str(SHARED / "sunrgbd_toy")), out, splits=("all",))
    report = check_source(SourceConfig(format="frames", root=str(out)))
    assert report.frames == 2 and not report.errors and not report.warnings
    assert sorted(report.resolutions) == [(561, 427), (730, 530)]
    assert 1.0 < float(np.median(report.medians)) < 4.0
