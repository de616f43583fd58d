"""``mask3d-vit predict``: the training resolution by default, legends and colour bars, detection score threshold,
folders of images. Models are untrained (built and saved as a run would): only the plumbing is under test."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from mask3d_vit.config import load_config, to_dict
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.checkpoint import save_checkpoint
from mask3d_vit.models.dense import DenseModel
from mask3d_vit.cli import build_parser
from mask3d_vit.tasks import finetune
from mask3d_vit.tasks.predict import Plan, plan_input

TRAIN_HW = (32, 48)
DENSE = ["data.size=[32, 48]", "model.encoder=vit_micro_patch16", "model.img_size=[32, 48]", "model.head=linear",
         "class_set=synthrooms"]


def cli(*argv) -> None:
    args = build_parser().parse_args(["predict"] + [str(a) for a in argv])
    args.func(args)


def dense_run(run_dir, task: str):
    torch.manual_seed(0)
    cfg = load_config(finetune.FinetuneConfig, None, [f"task={task}"] + DENSE)
    save_checkpoint({"model": finetune.build_model(cfg).state_dict(), "config": to_dict(cfg), "step": 1}, run_dir, 1)
    return run_dir


def write_image(path, h, w, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model_inputs(monkeypatch):
    """The (H, W) of every batch a dense model is asked to predict on."""
    seen = []
    original = DenseModel.infer

    def spy(self, rgb, *, window=None, stride=None):
        seen.append((tuple(rgb.shape[-2:]), window))
        return original(self, rgb, window=window, stride=stride)
    monkeypatch.setattr(DenseModel, "infer", spy)
    return seen


def test_plan_resizes_to_the_training_size_or_keeps_the_aspect_with_windows():
    same = plan_input((480, 720), TRAIN_HW)
    assert same.size == TRAIN_HW and same.window == 0 and "resized 480x720 -> 32x48" in same.note
    wide = plan_input((480, 1280), TRAIN_HW)  # wider than training: training pixel scale, 48-px windows
    assert wide.size == (32, 85) and wide.window == 48 and "aspect kept" in wide.note
    tall = plan_input((640, 480), TRAIN_HW)
    assert tall.size == (64, 48) and tall.window == 48
    assert plan_input((480, 640), TRAIN_HW, native=True).size is None
    assert plan_input(TRAIN_HW, TRAIN_HW).size is None  # already the training size: nothing to resize
    assert plan_input((480, 640), TRAIN_HW, size=(64, 64), window=32) == Plan(
        (64, 64), 32, "ran at 64x64 (--size); the model trained at 32x48; 32-px windows")


def test_segmentation_runs_at_the_training_size_and_draws_a_legend(tmp_path, model_inputs, capsys):
    run = dense_run(tmp_path / "seg", "seg")
    image = write_image(tmp_path / "room.png", 64, 96)
    cli("--ckpt", run, "--image", image, "--out", tmp_path / "room_seg.png", "--raw-out", tmp_path / "ids.png")
    assert model_inputs == [((32, 48), None)]
    assert "resized 64x96 -> 32x48 (the model trained at 32x48), prediction resized back" in capsys.readouterr().out
    ids = np.asarray(Image.open(tmp_path / "ids.png"))
    assert ids.shape == (64, 96)
    out = np.asarray(Image.open(tmp_path / "room_seg.png"))
    legend = out[:, 96:]
    assert out.shape[1] > 96 and legend.shape[0] >= 64
    palette = get_class_set("synthrooms").palette
    for i, class_id in enumerate(np.unique(ids)):  # one swatch per class present, in id order
        assert (legend[4 + 16 * i + 8, 10] == palette[class_id]).all(), class_id

    model_inputs.clear()
    cli("--ckpt", run, "--image", image, "--out", tmp_path / "native.png", "--native")
    assert model_inputs == [((64, 96), None)]


def test_depth_writes_a_colour_bar_in_metres(tmp_path, capsys):
    run = dense_run(tmp_path / "depth", "depth")
    image = write_image(tmp_path / "room.png", 40, 100)
    cli("--ckpt", run, "--image", image, "--out", tmp_path / "d.png", "--raw-out", tmp_path / "mm.png")
    printed = capsys.readouterr().out
    assert "resized 40x100 -> 32x80 (the training scale of the model trained at 32x48, aspect kept)" in printed
    out = np.asarray(Image.open(tmp_path / "d.png"))
    assert out.shape[0] == 96 and out.shape[1] > 100 + 40  # the bar is at least 96 px high, as wide as its text
    millimetres = np.asarray(Image.open(tmp_path / "mm.png"))
    lo, hi = (float(v) for v in printed.split("depth ")[1].split(" m")[0].split("-"))
    assert millimetres.shape == (40, 100) and lo <= np.median(millimetres) / 1000 <= hi


def test_a_folder_and_files_in_one_call_name_outputs_per_input(tmp_path, model_inputs):
    run = dense_run(tmp_path / "seg", "seg")
    (tmp_path / "photos").mkdir()
    for name in ("a.png", "b.jpg"):
        write_image(tmp_path / "photos" / name, 32, 48)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    extra = write_image(tmp_path / "c.png", 32, 48)
    cli("--ckpt", run, "--image", tmp_path / "photos", extra, "--out", tmp_path / "preds", "--raw-out",
        tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "preds").iterdir()) == ["a_seg.png", "b_seg.png", "c_seg.png"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["a_seg_raw.png", "b_seg_raw.png", "c_seg_raw.png"]
    assert len(model_inputs) == 3

    with pytest.raises(ValueError, match="with 3 images it must be a folder"):
        cli("--ckpt", run, "--image", tmp_path / "photos", extra, "--out", tmp_path / "one.png")
    write_image(tmp_path / "a.png", 32, 48)
    with pytest.raises(ValueError, match="several inputs are named a"):
        cli("--ckpt", run, "--image", tmp_path / "photos", tmp_path / "a.png", "--out", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="the folder holds no image"):
        cli("--ckpt", run, "--image", tmp_path / "empty", "--out", tmp_path / "x")


def test_detection_draws_what_passes_the_score_threshold_and_says_so(tmp_path, capsys):
    from mask3d_vit.tasks.detection import DetectionConfig, build_model
    from test_detection import TINY

    torch.manual_seed(0)
    names = get_class_set("synthrooms").names
    cfg = DetectionConfig(model=TINY, class_set="synthrooms", class_names=list(names))
    save_checkpoint({"model": build_model(cfg).state_dict(), "config": to_dict(cfg), "step": 1}, tmp_path / "det", 1)
    image = write_image(tmp_path / "room.png", 64, 64)
    pixels = np.asarray(Image.open(image))

    cli("--ckpt", tmp_path / "det", "--image", image, "--out", tmp_path / "strict.png")
    printed = capsys.readouterr().out
    total = int(printed.split(" of ")[1].split()[0])
    assert total > 0 and "drew 0 of" in printed and "lower --score-threshold to draw some" in printed
    assert "drawing instances scoring >= 0.5" in printed
    assert (np.asarray(Image.open(tmp_path / "strict.png")) == pixels).all()  # an untrained model: nothing passes

    cli("--ckpt", tmp_path / "det", "--image", image, "--out", tmp_path / "all.png", "--score-threshold", 0)
    assert f"drew {total} of {total} instances" in capsys.readouterr().out
    assert (np.asarray(Image.open(tmp_path / "all.png")) != pixels).any()
    with pytest.raises(ValueError, match="scores lie in"):
        cli("--ckpt", tmp_path / "det", "--image", image, "--out", tmp_path / "x.png", "--score-threshold", 5)
