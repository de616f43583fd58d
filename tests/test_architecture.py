"""The import rule of docs/architecture.md: each part of the package imports only the parts below it."""
import ast
from pathlib import Path

import pytest

import mask3d_vit

PACKAGE = Path(mask3d_vit.__file__).parent
BASE = {"io", "extras", "config", "checkpoint"}
# What each top-level part may import (besides itself and the package root's __version__). docs/architecture.md
# draws the same table as layers; a new part is added here and there together.
ALLOWED = {
    "io": set(),
    "extras": set(),
    "config": {"io"},
    "checkpoint": {"io"},
    "data": BASE - {"checkpoint"},
    "engine": BASE,
    "models": BASE | {"data"},
    "viz": BASE | {"data"},
    "eval": BASE | {"data", "engine", "models"},
    "tasks": BASE | {"data", "engine", "models", "viz", "eval"},
    "recipes": BASE | {"tasks"},
    "demo": BASE | {"data", "engine", "models", "viz", "eval", "tasks"},
    "cli": BASE | {"data", "tasks", "recipes"},
    "__main__": {"cli"},
    "__init__": set(),
}


def part_of(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def imported_parts(path: Path) -> dict[str, int]:
    """Top-level parts of the package that ``path`` imports -> the line of the first such import (relative imports
    resolved against the file's own package)."""
    package = path.relative_to(PACKAGE).parent.parts
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                parts = list(base) + (node.module.split(".") if node.module else [])
                targets = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "mask3d_vit":
                parts = node.module.split(".")[1:]
                targets = [parts[0]] if parts else [a.name for a in node.names]
            else:
                continue
        elif isinstance(node, ast.Import):
            targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("mask3d_vit.")]
        else:
            continue
        for target in targets:
            found.setdefault(target, node.lineno)
    return found


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_rule():
    assert {part_of(f) for f in FILES} <= set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers_only(path):
    own = part_of(path)
    wrong = {t: line for t, line in imported_parts(path).items()
             if t != own and t != "__version__" and t not in ALLOWED[own]}
    assert not wrong, (f"{path.relative_to(PACKAGE)} ({own}) imports {sorted(wrong)} at lines "
                       f"{sorted(wrong.values())}; {own} may import only {sorted(ALLOWED[own])}")


def test_the_rule_catches_an_import_that_runs_back_up(tmp_path):
    bad = PACKAGE / "engine" / "_probe_upward_import.py"
    bad.write_text("from ..models.mask3d import Mask3D\n")
    try:
        assert imported_parts(bad) == {"models": 1} and "models" not in ALLOWED[part_of(bad)]
    finally:
        bad.unlink()
