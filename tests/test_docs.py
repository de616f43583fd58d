"""The README, docs and code cite only files a user has: nothing outside the repository, no missing doc."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_and_code_cite_only_files_in_the_repository():
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "mask3d_vit").rglob("*.py")),
             *sorted((ROOT / "benchmarks").glob("*.py"))]
    problems = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        problems += [f"{where}: cites {m}" for m in re.findall(r"/work/\S*|\.\./shared/docs\S*", text)]
        for name in re.findall(r"\bdocs/([\w.-]+\.md)", text):
            if not (ROOT / "docs" / name).is_file():
                problems.append(f"{where}: cites docs/{name}, which does not exist")
        if path.parent.name == "docs":
            for name in re.findall(r"\]\(([\w.-]+\.md)\)", text):
                if not (path.parent / name).is_file():
                    problems.append(f"{where}: links {name}, which does not exist")
    assert not problems, "\n".join(problems)
