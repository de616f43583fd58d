"""End to end on a few SynthRooms frames: fine-tune (overfit), a frozen backbone from a weights file, eval and predict
CLIs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mask3d_vit.cli import build_parser
from mask3d_vit.config import ConfigError
from mask3d_vit.checkpoint import load_latest, save_checkpoint
from mask3d_vit.engine.logger import read_metrics
from mask3d_vit.models.vit import build_encoder
from mask3d_vit.tasks import finetune

# 4 frames at 32x48 seen without augmentation, and evaluated on the same frames: a memorisation test.
TINY = ["data.sources=[{format: synthrooms, num_frames: 4, seed: 0}]", "data.size=[32, 48]", "data.augment=false",
        "model.encoder=vit_micro_patch16", "model.img_size=[32, 48]", "model.neck_channels=16",
        "model.head_channels=16", "model.drop_path_rate=0.0", "model.dropout=0.0", "train.batch_size=4",
        "train.device=cpu", "train.log_every=5", "train.ckpt_every=1000", "train.eval_every=0",
        "optim.warmup_epochs=1", "optim.weight_decay=0.0", "optim.betas=[0.9, 0.999]", "optim.schedule=constant",
        "eval.split=train"]


def cli(*argv: str) -> None:
    """Run this module's subcommands as ``mask3d-vit`` would."""
    args = build_parser().parse_args([str(a) for a in argv])
    args.func(args)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("seg") / "run"
    # fp32 pinned: "auto" picks bf16 on CPUs that have it, and the eval CLI always runs in fp32.
    cli("finetune", "seg", "--out", run, *TINY, "model.head=upernet", "train.epochs=30", "optim.base_lr=0.5",
        "train.precision=fp32")
    return run


def test_finetune_overfits_a_few_synthrooms_frames(seg_run):
    report = json.loads((seg_run / "eval_train.json").read_text())
    assert report["task"] == "seg" and len(report["iou"]) == 13
    assert report["pixel_acc"] > 80.0, report
    losses = [r["loss_ce"] for r in read_metrics(seg_run) if "loss_ce" in r]
    assert losses[-1] < 0.5 * losses[0]
    table = (seg_run / "eval_train.md").read_text()
    assert "| wall |" in table and "pixel accuracy" in table
    stored = load_latest(seg_run)[1]["config"]
    assert stored["task"] == "seg" and stored["class_set"] == "synthrooms"


def test_eval_cli_recomputes_the_run_metrics(seg_run, tmp_path):
    cli("eval", "--ckpt", seg_run, "--out", tmp_path)
    again = json.loads((tmp_path / "eval_train.json").read_text())
    trained = json.loads((seg_run / "eval_train.json").read_text())
    # Same weights, frames and precision (fp32 in both): every metric, per-class IoUs included, is recomputed.
    assert {"miou", "macc", "pixel_acc", "iou", "acc"} <= trained.keys()
    np.testing.assert_equal(again, trained)  # NaN (a class in neither labels nor predictions) equals NaN


def test_predict_writes_an_overlay_png_at_the_input_size(seg_run, tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    cli("predict", "--ckpt", seg_run, "--image", image, "--out", tmp_path / "out.png", "--raw-out", tmp_path / "ids.png")
    with Image.open(tmp_path / "out.png") as out:  # the overlay at the input size, a legend on its right
        assert out.format == "PNG" and out.mode == "RGB" and out.size[0] > 56 and out.size[1] >= 40
    ids = np.asarray(Image.open(tmp_path / "ids.png"))
    assert ids.shape == (40, 56) and ids.min() >= 1 and ids.max() <= 13


def test_frozen_depth_from_a_weights_file_keeps_the_backbone_frozen(tmp_path):
    torch.manual_seed(3)
    weights = tmp_path / "encoder.pth"
    torch.save(build_encoder("vit_micro_patch16", img_size=32).state_dict(), weights)
    run = tmp_path / "frozen"
    cli("finetune", "depth", "--out", run, "--init-from", weights, *TINY, "model.head=linear",
        "model.freeze_backbone=true", "train.epochs=3", "optim.base_lr=0.5")
    report = json.loads((run / "eval_train.json").read_text())
    assert report["task"] == "depth" and report["images"] == 4
    assert np.isfinite([report[k] for k in ("abs_rel", "rmse", "log10", "delta1", "abs_rel_med")]).all()
    state = load_latest(run)[1]
    assert state["config"]["model"]["freeze_backbone"] and state["config"]["model"]["head"] == "linear"
    source = torch.load(weights, weights_only=True)
    for name in ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "cls_token"):
        assert torch.equal(state["model"][f"backbone.encoder.{name}"], source[name]), name

    image = tmp_path / "in.png"
    Image.fromarray(np.full((32, 48, 3), 128, np.uint8)).save(image)
    cli("predict", "--ckpt", run, "--image", image, "--out", tmp_path / "depth.png", "--raw-out", tmp_path / "mm.png",
        "--size", 32, 32)
    height, width, _ = np.asarray(Image.open(tmp_path / "depth.png")).shape
    assert height == 96 and width > 48 + 40  # + a colour bar, 96 px high
    millimetres = np.asarray(Image.open(tmp_path / "mm.png"))
    assert millimetres.shape == (32, 48) and millimetres.dtype == np.uint16 and millimetres.min() > 0


def test_loading_a_checkpoint_that_is_not_a_fine_tuning_run_fails_clearly(tmp_path):
    save_checkpoint({"model": {}, "config": {"model": {"encoder": "vit_micro_patch16"}}}, tmp_path, step=1)
    with pytest.raises(ConfigError, match="not a fine-tuning checkpoint"):
        finetune.load_dense_model(tmp_path)
