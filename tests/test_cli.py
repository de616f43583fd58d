"""The ``mask3d-vit`` command line: help without torch, handlers that exist, recipes that exist."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mask3d_vit.cli import Handler, build_parser, main
from mask3d_vit.config import RECIPES_DIR, load_config, recipe_command, resolve_recipe

ROOT = Path(__file__).resolve().parents[1]


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser) pair below ``parser``, e.g. (("finetune", "seg"), <parser>)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))


def test_help_of_every_command_imports_no_torch():
    # In a fresh interpreter: this test process has imported torch long ago.
    script = """
import json, sys
from mask3d_vit.cli import main
paths = json.loads(sys.argv[1])
for path in paths:
    try:
        main([*path, "--help"])
    except SystemExit:
        pass
print("TORCH" if "torch" in sys.modules else "NO-TORCH", file=sys.stderr)
"""
    paths = [list(path) for path, _ in commands(build_parser())]
    assert ["finetune", "det"] in paths and ["data", "convert"] in paths and [] in paths
    done = subprocess.run([sys.executable, "-c", script, json.dumps(paths)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "NO-TORCH"
    assert "mask3d-vit finetune" in done.stdout and "--init-from" in done.stdout


def test_every_command_handler_exists():
    handlers = {" ".join(path): p.get_default("func") for path, p in commands(build_parser())
                if p.get_default("func") is not None}
    assert {"pretrain", "finetune seg", "probe depth", "finetune det", "eval", "predict", "export", "data check",
            "data convert", "synth", "demo"} <= set(handlers)
    for name, handler in handlers.items():
        assert isinstance(handler, Handler), name
        assert callable(handler.resolve()), f"{name}: {handler.target} is not a function"


def test_recipes_named_in_help_texts_and_readme_exist():
    parsers = {" ".join(path) or "mask3d-vit": p for path, p in commands(build_parser())}
    texts = {where: p.format_help() for where, p in parsers.items()}
    texts["README.md"] = (ROOT / "README.md").read_text()
    named = {(where, name) for where, text in texts.items()
             for name in re.findall(r"--config[ =]+([a-z0-9_]+)\b", text)}
    named |= {(f"{where} --config default", p.get_default("config")) for where, p in parsers.items()
              if p.get_default("config")}
    assert {"pretrain_synth_tiny", "finetune_synth_seg", "det_synth_tiny"} <= {name for _, name in named}
    for where, name in sorted(named):
        try:
            resolve_recipe(name)
        except ValueError:
            pytest.fail(f"{where} names the recipe {name!r}, which does not exist")


@pytest.mark.parametrize("argv, right", [
    (["pretrain", "--config", "finetune_synth_seg"], "run: mask3d-vit finetune seg --config finetune_synth_seg"),
    (["finetune", "seg", "--config", "pretrain_synth_tiny"], "run: mask3d-vit pretrain --config pretrain_synth_tiny"),
    (["probe", "depth", "--config", "det_synth_tiny"], "run: mask3d-vit finetune det --config det_synth_tiny"),
])
def test_a_recipe_of_another_command_says_which_command_to_run(argv, right, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert right in err and "is a recipe for" in err, err
    assert not (tmp_path / "run").exists()


def test_every_packaged_recipe_names_the_command_that_runs_it():
    from mask3d_vit.tasks.detection import DetectionConfig
    from mask3d_vit.tasks.finetune import FinetuneConfig, ProbeConfig
    from mask3d_vit.tasks.pretrain import PretrainConfig

    config_of = {"pretrain": PretrainConfig, "finetune seg": FinetuneConfig, "finetune depth": FinetuneConfig,
                 "probe seg": ProbeConfig, "probe depth": ProbeConfig, "finetune det": DetectionConfig}
    trained = set()
    for recipe in sorted(RECIPES_DIR.glob("*.yaml")):
        command = recipe_command(recipe.stem)
        assert command, f"{recipe.name}: its header comment shows no command"
        name = command.removeprefix("mask3d-vit ")
        if name in config_of:
            load_config(config_of[name], recipe.stem)  # the command it names accepts it
            trained.add(name)
    assert trained == set(config_of)


@pytest.mark.parametrize("argv", [["pretrain"], ["finetune", "seg"], ["finetune", "det"]])
def test_the_printed_resume_command_names_the_task(argv):
    from pathlib import Path

    from mask3d_vit.engine.launch import command_words, resume_command
    args = build_parser().parse_args([*argv, "--out", "runs/x"])
    assert resume_command(command_words(args), Path("runs/x")) == " ".join(
        ["mask3d-vit", *argv, "--out", "runs/x", "--resume", "auto"])
