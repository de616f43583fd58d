"""Assertions per test, and the tests that have none (a test without one passes whatever the code does).

    python tools/test_asserts.py            # summary and the tests without assertions
    python tools/test_asserts.py --all      # every test with its count

Counted, by reading the source (no test runs): ``assert`` statements, ``pytest.raises`` / ``pytest.warns`` /
``pytest.fail``, calls to ``assert_*`` functions (``torch.testing.assert_close``, ``np.testing.assert_array_equal``),
and the same inside the helper functions of the test's own file or of the test modules it imports from (followed
transitively), and inside its fixtures of that file. A test with none of these is listed: it checks only that its
code runs without raising, which its name and docs/testing.md must then say.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def _called_names(node: ast.AST) -> set[str]:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def _direct_checks(node: ast.AST) -> int:
    count = 0
    for n in ast.walk(node):
        if isinstance(n, ast.Assert):
            count += 1
        elif isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name in ("raises", "warns", "fail") or name.startswith("assert_"):
                count += 1
    return count


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.ClassDef):
            out.update({f"{node.name}.{m.name}": m for m in node.body if isinstance(m, ast.FunctionDef)})
    return out


def count_assertions(tests: Path = TESTS) -> dict[str, tuple[int, list[str]]]:
    """``"file::test" -> (its own checks, the checking helpers and fixtures it uses)``."""
    trees = {p: ast.parse(p.read_text()) for p in sorted(tests.glob("*.py"))}
    # helpers that check something, by name, over every test module (test files import each other's helpers)
    functions = {name.split(".")[-1]: fn for tree in trees.values() for name, fn in _functions(tree).items()
                 if not name.split(".")[-1].startswith("test_")}
    checking: set[str] = {name for name, fn in functions.items() if _direct_checks(fn)}
    grown = True
    while grown:  # a helper that calls a checking helper checks too
        more = {name for name, fn in functions.items() if name not in checking and _called_names(fn) & checking}
        checking |= more
        grown = bool(more)
    counts = {}
    for path, tree in trees.items():
        if not path.name.startswith("test_"):
            continue
        for name, fn in _functions(tree).items():
            if not name.split(".")[-1].startswith("test_"):
                continue
            used = _called_names(fn) | {a.arg for a in fn.args.args}  # fixtures arrive as arguments
            counts[f"{path.name}::{name}"] = (_direct_checks(fn), sorted(used & checking))
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--all", action="store_true", help="print every test with its count")
    args = parser.parse_args(argv)
    counts = count_assertions()
    total = sum(own for own, _ in counts.values())
    helped = sorted(k for k, (own, helpers) in counts.items() if not own and helpers)
    none = sorted(k for k, (own, helpers) in counts.items() if not own and not helpers)
    print(f"{len(counts)} tests, {total} checks of their own ({total / max(len(counts), 1):.1f} per test)")
    print(f"{len(helped)} check only through helpers or fixtures:")
    for key in helped:
        print(f"  {key} ({', '.join(counts[key][1])})")
    print(f"{len(none)} without any check:")
    for key in none:
        print(f"  {key}")
    if args.all:
        print("every test: own checks")
        for key in sorted(counts):
            print(f"  {key}: {counts[key][0]}")


if __name__ == "__main__":
    main()
