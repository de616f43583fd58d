"""Checkpoint files on their own (no training loop): names, order, retention, safe loading, fallback past bad files."""
import logging
import pickle

import pytest
import torch

from mask3d_vit.checkpoint import (CheckpointError, checkpoint_path, list_checkpoints, load_checkpoint, load_latest,
                                   save_checkpoint)


def save(run_dir, step, keep=0):
    return save_checkpoint({"model": {"w": torch.full((2,), float(step))}, "step": step}, run_dir, step, keep=keep)


def cut(path):
    """Truncate a checkpoint as a crash mid-copy would."""
    path.write_bytes(path.read_bytes()[:200])


def test_names_order_and_strangers(tmp_path):
    assert checkpoint_path(tmp_path, 1234) == tmp_path / "checkpoints" / "step_00001234.pt"
    assert list_checkpoints(tmp_path) == []
    for step in (9, 10, 100, 2):  # numeric order, not the names' text order
        save(tmp_path, step)
    for stranger in ("step_1.pt.tmp", "step_00000011.pth", "notes.txt", "xstep_00000012.pt"):
        (tmp_path / "checkpoints" / stranger).write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "step_00000100.pt", "step_00000010.pt", "step_00000009.pt", "step_00000002.pt"]


def test_retention_keeps_the_newest_k_three_by_default_and_zero_keeps_all(tmp_path):
    for step in range(1, 5):
        assert save(tmp_path / "all", step, keep=0) == checkpoint_path(tmp_path / "all", step)
        save(tmp_path / "one", step, keep=1)
    assert len(list_checkpoints(tmp_path / "all")) == 4
    for step in range(1, 6):
        save_checkpoint({"model": {}, "step": step}, tmp_path / "default", step)
    assert len(list_checkpoints(tmp_path / "default")) == 3, "three kept unless told otherwise"
    assert [p.name for p in list_checkpoints(tmp_path / "one")] == ["step_00000004.pt"]
    assert load_checkpoint(checkpoint_path(tmp_path / "one", 4))["step"] == 4
    assert not list((tmp_path / "one" / "checkpoints").glob("*.tmp*")), "no temporary file left behind"


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    for name, content in (("list.pt", [1, 2]), ("weights.pt", {"w": torch.zeros(1)})):
        torch.save(content, tmp_path / name)
        with pytest.raises(CheckpointError, match=rf"{name}: not a mask3d-vit checkpoint \(no 'model' entry\)"):
            load_checkpoint(tmp_path / name)
    cut(save(tmp_path, 7))
    (tmp_path / "zeros.pt").write_bytes(bytes(4096))  # what a power loss can leave
    for path in (checkpoint_path(tmp_path, 7), tmp_path / "zeros.pt"):
        with pytest.raises(CheckpointError, match=rf"{path.name}: truncated or corrupt file \(RuntimeError: "):
            load_checkpoint(path)


def test_file_needing_unpickling_is_refused_with_the_detail(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": pickle.PickleError("x")}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused: .*Detail: Weights only load failed") as info:
        load_checkpoint(path)
    assert len(str(info.value).split("Detail: ")[1]) == 300, "the detail is cut at 300 characters"


def test_load_latest_falls_back_past_bad_files(tmp_path, caplog):
    with pytest.raises(CheckpointError, match="no checkpoints found"):
        load_latest(tmp_path)
    for step in (1, 2, 3):
        save(tmp_path, step)
    cut(checkpoint_path(tmp_path, 3))
    with caplog.at_level(logging.WARNING):
        path, state = load_latest(tmp_path)
    assert path == checkpoint_path(tmp_path, 2) and state["step"] == 2
    assert torch.equal(state["model"]["w"], torch.full((2,), 2.0))
    assert [m.split(": ")[0] for m in caplog.messages] == ["skipping unusable checkpoint"]
    assert "step_00000003.pt" in caplog.messages[0]
    # A file is loaded as itself, even an older one.
    assert load_latest(checkpoint_path(tmp_path, 1))[1]["step"] == 1
    assert load_latest(checkpoint_path(tmp_path, 1))[0] == checkpoint_path(tmp_path, 1)
    for step in (1, 2):
        cut(checkpoint_path(tmp_path, step))
    with pytest.raises(CheckpointError, match="every checkpoint is unusable"):
        load_latest(tmp_path)


def test_a_short_garbage_file_is_reported_as_corrupt_and_skipped(tmp_path):
    # torch's legacy reader fails on a few non-zip bytes with IndexError, not one of the I/O errors
    save(tmp_path, 1)
    checkpoint_path(tmp_path, 2).write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match=r"step_00000002\.pt: truncated or corrupt file"):
        load_checkpoint(checkpoint_path(tmp_path, 2))
    assert load_latest(tmp_path)[1]["step"] == 1
