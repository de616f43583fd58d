"""The task registry: a task is one declaration, and every task command reads it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import torch

from mask3d_vit.cli import build_parser, main
from mask3d_vit.engine.logger import read_metrics
from mask3d_vit.engine.optim import OptimConfig
from mask3d_vit.engine.trainer import TrainConfig
from mask3d_vit.tasks import train as task_runner
from mask3d_vit.data.classes import get_class_set
from mask3d_vit.tasks.registry import TASKS, Task, get_task, register, resolve, task_of_config, unregister
from mask3d_vit.tasks.train import TrainData, restore
from toy import DetModel, ToyData


# -- a toy task, defined here: config, model builder, evaluator and one registration line ---------------------
@dataclass
class ToyConfig:
    task: str = "toy"
    frames: int = 8
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    init_from: str = ""


def build_toy_model(cfg: ToyConfig, *, load_init: bool = True) -> DetModel:
    BUILT.append(("model", cfg.frames))
    return DetModel()


class ToyEvaluator:
    """Mean squared error on four fixed frames, computed on the device it was built for."""

    def __init__(self, device: torch.device):
        self.device = device
        self.batch = torch.utils.data.default_collate([ToyData(4)[i] for i in range(4)])

    def __call__(self, model) -> dict[str, float]:
        batch = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in self.batch.items()}
        return {"toy_mse": float(model(batch)["loss"])}


def build_toy_evaluator(cfg: ToyConfig, *, device: torch.device, out_dir) -> ToyEvaluator:
    BUILT.append(("evaluator", device))
    return ToyEvaluator(device)


TOY = Task("toy", ("finetune", "toy"), "a toy regression task", recipe="toy", config=ToyConfig,
           model=build_toy_model, evaluator=build_toy_evaluator, train_data=lambda cfg: TrainData(ToyData(cfg.frames)))
BUILT: list = []


@pytest.fixture
def toy_recipe(tmp_path):
    recipe = tmp_path / "toy.yaml"
    recipe.write_text("train:\n  epochs: 1\n  max_steps: 1\n  batch_size: 4\n  precision: fp32\n  device: cpu\n")
    return recipe


def test_a_registered_toy_task_trains_one_step_through_the_cli(tmp_path, toy_recipe):
    BUILT.clear()
    register(TOY)
    try:
        assert main(["finetune", "toy", "--config", str(toy_recipe), "--out", str(tmp_path / "run"),
                     "frames=12"]) == 0
        task, model, cfg, _ = restore(tmp_path / "run")  # the checkpoint names its task; the registry rebuilds it
        assert task is TOY and isinstance(model, DetModel) and cfg.frames == 12
    finally:
        unregister("toy")
    # The runner used the declared parts, the evaluator built with the run's device before training began.
    assert BUILT[:2] == [("model", 12), ("evaluator", torch.device("cpu"))]
    records = read_metrics(tmp_path / "run")
    assert [r["step"] for r in records if "eval/toy_mse" in r] == [1]
    assert "toy" not in TASKS
    with pytest.raises(SystemExit):  # unregistered: the command is gone
        build_parser().parse_args(["finetune", "toy", "--config", str(toy_recipe)])


def test_registering_a_taken_name_or_command_fails():
    with pytest.raises(ValueError, match="already registered"):
        register(get_task("seg"))
    with pytest.raises(ValueError, match="task 'det2': `finetune det` already runs task 'det'"):
        register(Task("det2", ("finetune", "det"), "", recipe="", config=ToyConfig, model=build_toy_model))
    with pytest.raises(ValueError, match="unknown task 'nope'; registered tasks: pretrain, seg"):
        get_task("nope")


def test_a_config_of_another_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="task='depth' in the config, but this runs task 'seg'"):
        task_runner.train_task("seg", type("Cfg", (), {"task": "depth"})(), tmp_path)


def test_predict_reads_the_checkpoint_once(tmp_path, monkeypatch):
    from test_predict import dense_run, write_image

    run = dense_run(tmp_path / "seg", "seg")
    reads = []
    original = task_runner.load_latest
    monkeypatch.setattr(task_runner, "load_latest", lambda path: reads.append(path) or original(path))
    image = write_image(tmp_path / "a.png", 32, 48)
    assert main(["predict", "--ckpt", str(run), "--image", str(image), "--out", str(tmp_path / "a_seg.png")]) == 0
    assert reads == [str(run)] and (tmp_path / "a_seg.png").is_file()


def double_frames(cfg: ToyConfig) -> ToyConfig:
    return dataclasses.replace(cfg, frames=2 * cfg.frames)


def test_prepare_completes_the_config_and_a_task_without_one_keeps_it():
    cfg = ToyConfig(frames=3)
    prepared = dataclasses.replace(TOY, prepare=f"{__name__}:double_frames").prepared(cfg)  # a named part
    assert prepared.frames == 6 and cfg.frames == 3
    assert dataclasses.replace(TOY, prepare=double_frames).prepared(cfg).frames == 6  # the object itself
    assert TOY.prepared(cfg) is cfg


def test_builtin_prepare_steps_fill_in_the_label_space_from_the_data():
    from mask3d_vit.config import ConfigError
    from mask3d_vit.tasks.detection import DetectionConfig
    from mask3d_vit.tasks.finetune import FinetuneConfig

    seg = get_task("seg").prepared(FinetuneConfig(task="seg"))
    assert seg.class_set == "synthrooms"
    assert get_task("depth").prepared(FinetuneConfig(task="depth")).class_set == ""  # depth has no label space
    with pytest.raises(ConfigError, match="class_set='nyu40' but the data sources are labelled in 'synthrooms'"):
        get_task("seg").prepared(FinetuneConfig(task="seg", class_set="nyu40"))
    det = get_task("det").prepared(DetectionConfig())
    assert det.class_set == "synthrooms" and det.class_names == list(get_class_set("synthrooms").names)


def test_a_stored_config_names_its_task_and_pretraining_has_none():
    assert task_of_config({"task": "depth"}) is get_task("depth")
    assert task_of_config({}) is get_task("pretrain") and task_of_config({"task": ""}) is get_task("pretrain")
    with pytest.raises(ValueError, match="unknown task 'gone'"):
        task_of_config({"task": "gone"})


def test_unregister_returns_the_task_and_refuses_an_unknown_name():
    register(TOY)
    assert unregister("toy") is TOY and "toy" not in TASKS
    with pytest.raises(ValueError, match="unknown task 'toy'"):
        unregister("toy")
    assert resolve(TOY) is TOY and resolve("mask3d_vit.tasks.registry:get_task") is get_task
