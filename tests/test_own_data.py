"""A user's own data, first day: partly labelled sources, split lists, class sets of the same classes and batches of
one, each driven through the command line as a user meets it."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from mask3d_vit.cli import main
from mask3d_vit.data.build import DataConfig, SourceConfig, build_dataset
from mask3d_vit.data.classes import NYU13
from mask3d_vit.data.frames import FramesWriter
from mask3d_vit.io import write_png
from mask3d_vit.models.dense import DenseModel, DenseModelConfig

MICRO_SEG = ["data.size=[32,48]", "model.encoder=vit_micro_patch16", "model.img_size=[32,48]",
             "model.neck_channels=16", "model.head_channels=16", "train.device=cpu", "train.precision=fp32",
             "train.eval_every=0", "train.log_every=1", "eval.max_images=2"]


@pytest.fixture
def nyu_png(tmp_path):
    """An NYUv2 PNG export of four official train frames (3-6), label maps on frames 3 and 5 only."""
    root = tmp_path / "nyu"
    rng = np.random.default_rng(0)
    for index in (3, 4, 5, 6):
        write_png(root / "rgb" / f"{index:04d}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        write_png(root / "depth" / f"{index:04d}.png", np.full((24, 32), 2500, np.uint16))
        if index in (3, 5):
            write_png(root / "label13" / f"{index:04d}.png", rng.integers(1, 14, (24, 32)).astype(np.uint8))
    return root


def test_convert_writes_the_splits_the_source_has_and_refuses_a_named_empty_one(nyu_png, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    assert main(["data", "convert", "nyuv2", str(nyu_png), "--out", str(out), "--class-set", "nyu13", "--quiet"]) == 0
    assert (out / "train.txt").read_text().split() == ["0003", "0004", "0005", "0006"]
    assert not (out / "test.txt").exists() and json.loads((out / "meta.json").read_text())["splits"] == ["train"]
    assert "no frames of split 'test'; converting train" in caplog.text
    assert main(["data", "convert", "nyuv2", str(nyu_png), "--out", str(tmp_path / "t"), "--splits", "test"]) == 1
    err = capsys.readouterr().err
    assert f"{nyu_png}: no frames found" in err and "split 'test'" in err


def test_labelled_only_convert_keeps_the_labelled_frames_and_check_counts_them_per_split(nyu_png, tmp_path, capsys):
    assert main(["data", "check", str(nyu_png), "--class-set", "nyu13", "--quiet"]) == 0
    report = capsys.readouterr().out
    assert "split train: 4 frames, 2 with labels" in report and "split test: no frames" in report
    out = tmp_path / "labelled"
    assert main(["data", "convert", "nyuv2", str(nyu_png), "--out", str(out), "--class-set", "nyu13",
                 "--labelled-only", "--quiet"]) == 0
    assert (out / "train.txt").read_text().split() == ["0003", "0005"]
    assert sorted(p.name for p in (out / "rgb").iterdir()) == ["0003.png", "0005.png"]
    assert main(["data", "check", str(out), "--quiet"]) == 0
    assert "split train: 2 frames, 2 with labels" in capsys.readouterr().out
    # Fine-tuning reads the folder whole.
    frames = build_dataset(DataConfig(sources=[SourceConfig("frames", root=str(out))], size=(16, 24)),
                           split="train", train=False, require_labels=True)
    assert [tuple(frames[i]["label"].shape) for i in range(len(frames))] == [(16, 24)] * 2


def test_labelled_only_on_a_source_without_labels_says_so(tmp_path, capsys):
    writer = FramesWriter(tmp_path / "f")
    writer.write("a", np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 2.0), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["a"]})
    assert main(["data", "convert", "frames", str(tmp_path / "f"), "--out", str(tmp_path / "o"),
                 "--labelled-only", "--quiet"]) == 1
    assert "none of its frames (1 of split 'train') has a label map" in capsys.readouterr().err


def test_a_missing_label_blames_the_label_not_the_depth_probe(nyu_png, caplog):
    data = DataConfig(sources=[SourceConfig("nyuv2", root=str(nyu_png), class_set="nyu13")], size=(16, 24))
    with caplog.at_level(logging.WARNING, logger="mask3d_vit.data"):
        frames = build_dataset(data, split="train", train=False, require_labels=True)
    assert "probe" not in caplog.text  # the depth of every probed frame is readable: no label is needed for it
    with pytest.raises(FileNotFoundError, match=r"label13/0004.png: missing label map .*--labelled-only"):
        frames[1]


def test_check_reports_a_split_list_naming_a_frame_without_files(tmp_path, capsys):
    writer = FramesWriter(tmp_path, classes=list(NYU13), class_set="nyu13")
    for fid in ("a", "b"):
        writer.write(fid, np.zeros((6, 8, 3), np.uint8), np.full((6, 8), 2.0), intrinsics=(5, 5, 3.5, 2.5))
    writer.finish({"train": ["a", "ghost"], "val": ["b"]})
    assert main(["data", "check", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'train.txt'}: lists frame 'ghost', which has no rgb/ghost.png or depth/ghost.png" in out
    assert "split val: 1 frames, 0 with labels" in out


@pytest.fixture(scope="module")
def synth_seg_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("own") / "seg"
    assert main(["finetune", "seg", "--out", str(run), "data.sources=[{format: synthrooms, num_frames: 4, seed: 0}]",
                 *MICRO_SEG, "train.batch_size=2", "train.max_steps=1"]) == 0
    return run


def test_a_synthrooms_model_is_scored_on_real_nyu13_frames_but_not_on_nyu40(synth_seg_run, nyu_png, tmp_path,
                                                                            capsys):
    labelled = tmp_path / "nyu13"
    assert main(["data", "convert", "nyuv2", str(nyu_png), "--out", str(labelled), "--class-set", "nyu13",
                 "--labelled-only", "--quiet"]) == 0
    assert main(["eval", "--ckpt", str(synth_seg_run), "--out", str(tmp_path / "eval"),
                 f"data.val_sources=[{{format: frames, root: {labelled}, split: train}}]"]) == 0
    report = json.loads((tmp_path / "eval" / "eval_val.json").read_text())
    assert report["task"] == "seg" and len(report["iou"]) == 13
    assert main(["eval", "--ckpt", str(synth_seg_run), "--out", str(tmp_path / "eval40"),
                 f"data.val_sources=[{{format: nyuv2, root: {nyu_png}, split: train, class_set: nyu40}}]"]) == 1
    assert "data sources use different class sets (synthrooms: synthrooms; nyu40:" in capsys.readouterr().err


def test_a_batch_of_one_with_the_batchnorm_head_names_the_fix(tmp_path, capsys):
    assert main(["finetune", "seg", "--out", str(tmp_path / "run"), *MICRO_SEG, "train.batch_size=1",
                 "data.sources=[{format: synthrooms, num_frames: 2, seed: 0}]"]) == 1
    err = capsys.readouterr().err
    assert "model.norm=LN" in err and "Expected more than 1 value" not in err


def test_the_layernorm_head_trains_on_a_batch_of_one():
    cfg = DenseModelConfig(encoder="vit_micro_patch16", img_size=(32, 48), neck_channels=16, head_channels=16,
                           norm="LN")
    model = DenseModel.from_config(cfg, task="seg", num_classes=13).train()
    batch = {"rgb": torch.zeros(1, 3, 32, 48, dtype=torch.uint8), "label": torch.ones(1, 32, 48, dtype=torch.long)}
    assert torch.isfinite(model(batch)["loss"])


def test_real_nyuv2_sample_converts_and_checks_without_a_dead_end(shared_data, tmp_path, capsys):
    nyu = shared_data / "nyuv2_train_mini"
    out = tmp_path / "nyu13"
    assert main(["data", "convert", "nyuv2", str(nyu), "--out", str(out), "--class-set", "nyu13",
                 "--labelled-only", "--quiet"]) == 0
    assert (out / "train.txt").read_text().split() == ["0003"]
    assert main(["data", "check", str(nyu), "--class-set", "nyu13", "--quiet"]) == 0
    assert "split train: 10 frames, 1 with labels" in capsys.readouterr().out


def test_pack_takes_the_splits_a_source_has_and_its_labelled_frames(nyu_png, tmp_path, capsys):
    pytest.importorskip("litdata", reason="the packed store needs the 'packed' extra")
    out = tmp_path / "packed"
    assert main(["data", "pack", str(nyu_png), "--format", "nyuv2", "--out", str(out), "--size", "24x32",
                 "--class-set", "nyu13", "--labelled-only", "--quiet"]) == 0
    assert main(["data", "check", str(out), "--quiet"]) == 0
    assert "split train: 2 frames, 2 with labels" in capsys.readouterr().out
