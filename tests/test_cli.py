"""The ``mask3d-vit`` command line: help without torch, handlers that exist, recipes that exist."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mask3d_vit.cli import Handler, build_parser
from mask3d_vit.config import resolve_recipe

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
