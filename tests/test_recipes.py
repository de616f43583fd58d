"""``mask3d-vit config list`` / ``config show``: recipes per task, and resolved configs without running."""
from __future__ import annotations

import pytest
import yaml

from mask3d_vit.cli import main
from mask3d_vit.config import RECIPES_DIR, ConfigError
from mask3d_vit.recipes import KINDS, recipe_kind, show_config


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_packaged_recipe_has_a_task_and_resolves(path):
    kind = recipe_kind(path)
    assert kind is not None, f"{path.name}: config list cannot place it; name its command in the header comment"
    shown = yaml.safe_load(show_config(path.stem))
    if kind.task in ("seg", "depth", "probe-seg", "probe-depth"):
        assert shown["task"] == kind.task.removeprefix("probe-")
    if kind.task in ("seg", "depth"):
        assert shown["model"]["freeze_backbone"] is False
    if kind.task.startswith("probe-"):  # the closed-form probe: no training loop to configure
        assert "train" not in shown and "ridges" in shown


def test_config_list_groups_recipes_under_their_command(capsys):
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = {line.split()[0]: i for i, line in enumerate(lines) if not line.startswith(" ")}
    assert set(header) == set(KINDS)
    assert lines[header["pretrain"]] == "pretrain  (mask3d-vit pretrain --config NAME)"
    under_pretrain = lines[header["pretrain"] + 1:header["seg"]]
    assert [line.split()[0] for line in under_pretrain] == ["pretrain_scannet_base", "pretrain_synth_tiny"]
    assert "sized for a CPU" in under_pretrain[1]
    assert any(line.split()[0] == "probe_synth_depth" for line in lines[header["probe-depth"] + 1:])


def test_config_show_prints_the_resolved_config_with_overrides(capsys):
    assert main(["config", "show", "pretrain_synth_tiny", "data.sources.0.num_frames=100", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("# mask3d-vit pretrain --config pretrain_synth_tiny data.sources.0.num_frames=100 "
                                   "train.epochs=2")
    cfg = yaml.safe_load(out)
    assert cfg["data"]["sources"][0]["num_frames"] == 100 and cfg["train"]["epochs"] == 2
    assert cfg["model"]["img_size"] == cfg["data"]["size"] == [96, 128]  # follows the recipe's data.size
    assert cfg["train"]["log_every"] == 20 and "figure_every" in cfg["train"]  # recipe values and defaults alike


def test_config_show_of_an_own_recipe_needs_a_task(tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("train:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="cannot tell the task: its header comment names no command"):
        show_config(str(recipe))
    assert main(["config", "show", str(recipe), "--task", "seg"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["task"] == "seg" and cfg["model"]["freeze_backbone"] is False and cfg["train"]["epochs"] == 3


def test_config_show_reports_bad_overrides_as_the_run_would(capsys):
    assert main(["config", "show", "finetune_synth_seg", "train.epoch=2"]) == 1
    assert "unknown key train.epoch" in capsys.readouterr().err


def test_an_own_recipe_is_placed_by_the_command_its_header_names(tmp_path):
    recipe = tmp_path / "anything.yaml"
    recipe.write_text("# Fine-tune on my frames:\n#   mask3d-vit finetune depth --config anything.yaml\ntrain:\n  epochs: 3\n")
    assert recipe_kind(recipe) is KINDS["depth"]
    shown = yaml.safe_load(show_config(str(recipe)))
    assert shown["task"] == "depth" and shown["train"]["epochs"] == 3


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("pretrain_*.yaml")), ids=lambda p: p.stem)
def test_a_recipe_that_names_an_architecture_builds_that_factorys_model(path):
    from mask3d_vit.models.mask3d import ARCHITECTURES
    named = [name for name in ARCHITECTURES if name in path.read_text()]
    assert len(named) == 1, f"{path.name}: name the architecture of its model section (one of {list(ARCHITECTURES)})"
    model = KINDS["pretrain"].load(path).model
    differs = {key: (getattr(model, key), value) for key, value in ARCHITECTURES[named[0]].items()
               if getattr(model, key) != value}
    assert not differs, f"{path.name} vs {named[0]}: (recipe, factory) {differs}"
