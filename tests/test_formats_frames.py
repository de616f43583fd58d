"""Frames folders and the dataset factory: sizes, keys, label checks, units guard, skip_bad, cache, concatenation."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from mask3d_vit.config import ConfigError, load_config
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset, class_set_of
from mask3d_vit.data.classes import NYU13
from mask3d_vit.data.frames import FramesDataset, FramesWriter

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_frames(root, n=6, *, h=30, w=40, labels=True, class_set="nyu13", depth_m=2.0, split_val=2):
    """A frames folder of ``n`` frames: RGB noise, depth around ``depth_m`` with a hole, labels 0..13."""
    rng = np.random.default_rng(0)
    writer = FramesWriter(root, classes=list(NYU13) if labels else [], class_set=class_set if labels else None)
    ids = [f"f{i:02d}" for i in range(n)]
    for fid in ids:
        depth = rng.uniform(0.8, 1.2, (h, w)) * depth_m
        depth[:5, :5] = 0
        writer.write(fid, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth, intrinsics=(40, 40, 19.5, 14.5),
                     label=rng.integers(0, 14, (h, w)) if labels else None,
                     instance=rng.integers(0, 4, (h, w)) if labels else None)
    writer.finish({"train": ids[split_val:], "val": ids[:split_val]})
    return root


def frames_cfg(*roots, **kw):
    return DataConfig(sources=[SourceConfig(format="frames", root=str(r)) for r in roots], size=(16, 24), **kw)


def test_build_dataset_from_frames_folder(tmp_path):
    cfg = frames_cfg(write_frames(tmp_path / "a"))
    train = build_dataset(cfg, split="train", train=True, require_labels=True)
    val = build_dataset(cfg, split="val", train=False)
    assert len(train) == 4 and len(val) == 2
    s = train[0]
    assert s["rgb"].shape == (3, 16, 24) and s["rgb"].dtype == torch.uint8
    assert s["depth"].shape == (1, 16, 24) and s["depth"].dtype == torch.float32
    assert s["label"].shape == (16, 24) and s["label"].dtype == torch.int64 and int(s["label"].max()) <= 13
    assert "instance" not in s, "instance maps only when asked for"
    assert "label" not in val[0], "pre-training samples drop labels so labelled and unlabelled sources batch"
    d = s["depth"][s["valid"]]
    assert d.min() > 1.5 and d.max() < 2.5 and torch.equal(s["valid"], s["depth"] > 0)
    batch = torch.utils.data.default_collate([train[i] for i in range(4)])
    assert batch["rgb"].shape == (4, 3, 16, 24)
    assert class_set_of(cfg) == "nyu13"


def test_max_depth_invalidates_far_depth(tmp_path):
    cfg = frames_cfg(write_frames(tmp_path / "a", depth_m=5.0), max_depth=5.0, augment=False)
    s = build_dataset(cfg, split="train")[0]
    assert s["depth"].max() < 5.0 and (~s["valid"]).float().mean() > 0.3


def test_several_sources_concatenate_and_fraction_subsets(tmp_path):
    a, b = write_frames(tmp_path / "a", n=6), write_frames(tmp_path / "b", n=12, labels=False)
    ds = build_dataset(frames_cfg(a, b), split="train")
    assert len(ds) == 4 + 10 and isinstance(ds, torch.utils.data.ConcatDataset)
    cfg = DataConfig(sources=[SourceConfig(format="frames", root=str(b), fraction=0.5, seed=1)], size=(16, 24))
    assert len(build_dataset(cfg, split="train")) == 5
    with pytest.raises(ConfigError, match="no labels"):
        class_set_of(frames_cfg(a, b))
    with pytest.raises(FileNotFoundError, match="missing label map"):
        build_dataset(frames_cfg(a, b), split="train", require_labels=True)[5]


def test_cache_decodes_once_and_returns_the_same_samples(tmp_path):
    root = write_frames(tmp_path / "a")
    ds = build_dataset(frames_cfg(root, augment=False, cache=True), split="train", require_labels=True)
    first = [ds[i] for i in (0, 3)]
    (root / "rgb" / "f02.png").unlink()  # frame 0 is served from memory from now on
    again = ds[0]
    assert torch.equal(again["rgb"], first[0]["rgb"]) and torch.equal(again["label"], first[0]["label"])
    assert torch.allclose(again["depth"], first[0]["depth"]) and torch.equal(again["valid"], first[0]["valid"])
    assert again["depth"].dtype == torch.float32 and again["label"].dtype == torch.int64
    assert sorted(ds._cache) == [0, 3]


def test_wrong_depth_scale_stops_the_run(tmp_path):
    root = write_frames(tmp_path / "a")
    cfg = DataConfig(sources=[SourceConfig(format="frames", root=str(root), depth_scale=1.0)], size=(16, 24))
    with pytest.raises(ValueError, match="median depth is 1999 m.*depth scale"):
        build_dataset(cfg, split="train")
    cfg.check_units = False
    assert len(build_dataset(cfg, split="train")) == 4


def test_skip_bad_logs_and_skips_broken_frames(tmp_path, caplog):
    root = write_frames(tmp_path / "a")
    (root / "depth" / "f03.png").write_bytes(b"\x89PNG truncated")
    cfg = frames_cfg(root, cache=False)
    with pytest.raises(ValueError, match=r"f03\.png: unreadable image"):
        build_dataset(cfg, split="train")[1]
    cfg.skip_bad = True
    ds = build_dataset(cfg, split="train")
    with caplog.at_level(logging.WARNING, logger="mask3d_vit.data"):
        s = ds[1]
    assert s["frame_id"] == "f04" and "f03.png" in caplog.text


def test_label_ids_outside_the_class_set_are_an_error(tmp_path):
    root = write_frames(tmp_path / "a")
    writer = FramesWriter(root, classes=list(NYU13), class_set="nyu13")
    writer.write("f02", np.zeros((30, 40, 3), np.uint8), np.full((30, 40), 2.0), label=np.full((30, 40), 40))
    with pytest.raises(ValueError, match="label id 40 outside its class set"):
        build_dataset(frames_cfg(root), split="train", require_labels=True)[0]


def test_frames_errors_name_the_file(tmp_path):
    root = write_frames(tmp_path / "a")
    (root / "depth" / "f02.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"depth/f02\.png: missing depth map"):
        FramesDataset(root, "train")[0]
    (root / "depth" / "zz.png").write_bytes(b"")
    assert any("zz.png" in p for p in FramesDataset(root, "train").problems)


def test_source_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="format 'kitti' is unknown"):
        build_dataset(DataConfig(sources=[SourceConfig(format="kitti", root="x")]))
    with pytest.raises(ConfigError, match="need depth_scale"):
        build_dataset(DataConfig(sources=[SourceConfig(format="pairs", root=str(tmp_path))]))
    with pytest.raises(ConfigError, match="only nyuv2 sources choose a class set"):
        build_dataset(DataConfig(sources=[SourceConfig(format="cityscapes", root=str(tmp_path), class_set="nyu13")]))


def test_data_config_reads_from_yaml_overrides():
    from dataclasses import dataclass, field

    @dataclass
    class Run:
        data: DataConfig = field(default_factory=DataConfig)

    cfg = load_config(Run, overrides=["data.sources=[{format: nyuv2, root: nyu.mat, class_set: nyu13}]",
                                      "data.size=[240, 320]"])
    assert cfg.data.sources[0].class_set == "nyu13" and cfg.data.size == (240, 320)
    assert class_set_of(cfg.data) == "nyu13"


def test_synthrooms_source_renders_at_the_training_size():
    cfg = DataConfig(sources=[SourceConfig(num_frames=3)], size=(32, 48))
    train, val = build_dataset(cfg, split="train", require_labels=True), build_dataset(cfg, split="val", train=False)
    assert len(train) == 3 and train[0]["rgb"].shape == (3, 32, 48) and train[0]["label"].shape == (32, 48)
    assert not torch.equal(train[0]["rgb"], val[0]["rgb"]), "validation scenes come from another seed"
    assert class_set_of(cfg) == "synthrooms"


@pytest.mark.skipif(not (SHARED / "nyuv2_train_mini").is_dir(), reason=f"{SHARED}/nyuv2_train_mini is absent")
def test_real_frames_at_240x320_through_the_factory():
    cfg = DataConfig(sources=[SourceConfig(format="nyuv2", root=str(SHARED / "nyuv2_train_mini"))], size=(240, 320))
    torch.manual_seed(0)
    s = build_dataset(cfg, split="train", train=True)[0]
    assert s["rgb"].shape == (3, 240, 320)
    d = s["depth"][s["valid"]]
    assert 0.3 < d.median() < 8.0


def test_cache_stops_at_its_budget(tmp_path):
    root = write_frames(tmp_path / "a")
    ds = build_dataset(frames_cfg(root, augment=False, cache_gb=1e-9), split="train")
    ds[0], ds[1]
    assert sorted(ds._cache) == [0], "the first frame fills the tiny budget; later ones are not kept"
