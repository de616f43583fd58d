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


# Micro sizes for the walkthrough's training commands; the commands themselves are the doc's, word for word.
MICRO = {"pretrain": ["data.size=[32,48]", "model.img_size=[32,48]", "model.encoder=vit_micro_patch16",
                      "model.decoder_dim=32", "model.depth_dim=32", "model.decoder_depth=1", "model.depth_blocks=1",
                      "train.batch_size=2", "train.max_steps=1", "train.device=cpu", "val_batches=1"],
         "finetune": ["data.size=[32,48]", "model.img_size=[32,48]", "model.encoder=vit_micro_patch16",
                      "model.neck_channels=16", "model.head_channels=16", "train.batch_size=2", "train.max_steps=1",
                      "train.device=cpu", "train.eval_every=0"]}


def test_the_own_captures_walkthrough_runs_as_written(tmp_path, monkeypatch):
    import shlex

    import numpy as np

    from mask3d_vit.cli import main
    from mask3d_vit.data.classes import NYU13
    from mask3d_vit.data.frames import FramesWriter

    text = (ROOT / "docs" / "transfer.md").read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough")[1].split("```bash\n")[1].split("```")[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert [c[1] for c in commands] == ["data", "data", "pretrain", "finetune", "eval", "export"]
    # A user's captures: 8 frames, labels on 2 of the 6 training frames and on both validation frames.
    rng = np.random.default_rng(0)
    writer = FramesWriter(tmp_path / "captures", classes=list(NYU13), class_set="nyu13")
    for i in range(8):
        label = rng.integers(1, 14, (32, 48)) if i in (0, 1, 6, 7) else None
        writer.write(f"f{i}", rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), 2 + rng.random((32, 48)),
                     intrinsics=(40, 40, 24, 16), label=label)
    writer.finish({"train": [f"f{i}" for i in range(6)], "val": ["f6", "f7"]})
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = command[1:] + MICRO.get(command[1], [])
        assert main(argv + (["--quiet"] if command[1] == "data" else [])) == 0, argv
    assert (tmp_path / "captures_labelled" / "train.txt").read_text().split() == ["f0", "f1"]
    assert (tmp_path / "own_seg_vit" / "model.safetensors").is_file()
