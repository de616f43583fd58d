"""A pre-training run killed with SIGKILL and resumed with --resume auto ends bitwise identical to one that never
stopped (weights, optimizer and data order, masking RNG)."""
import os
import signal
import subprocess
import sys
import time

import torch

from mask3d_vit.checkpoint import list_checkpoints, load_latest

ARGS = ["data.sources=[{format: synthrooms, num_frames: 32, seed: 3}]", "data.size=[32,48]",
        "model.img_size=[32,48]", "model.encoder=vit_micro_patch16", "model.decoder_dim=32",
        "model.depth_dim=32", "model.decoder_depth=1", "model.depth_blocks=1", "train.epochs=4",
        "train.batch_size=4", "train.ckpt_every=1", "train.keep_ckpts=3", "train.log_every=1",
        "train.precision=fp32", "val_batches=0", "optim.base_lr=1e-2"]


def pretrain(out, *extra, wait=True):
    cmd = [sys.executable, "-m", "mask3d_vit", "pretrain", "--out", str(out), *extra, *ARGS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    pretrain(tmp_path / "straight")
    victim = pretrain(tmp_path / "killed", wait=False)
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "checkpoints" / "step_00000011.pt").exists():
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = int(list_checkpoints(tmp_path / "killed")[0].stem.split("_")[1])
    assert killed_at < 32, "the run finished before it was killed; nothing was tested"
    out = pretrain(tmp_path / "killed", "--resume", "auto")
    assert f"at step {killed_at}" in out
    a = load_latest(tmp_path / "straight")[1]
    b = load_latest(tmp_path / "killed")[1]
    assert a["step"] == b["step"] == 32
    assert len(a["optimizer"]["state"]) == len(a["model"]) > 0  # every parameter has AdamW state

    def assert_same(x, y, where):
        """Same keys, recursively; bitwise equal tensors; equal plain values."""
        assert type(x) is type(y), where
        if isinstance(x, dict):
            assert x.keys() == y.keys(), f"{where}: keys {sorted(map(str, x.keys() ^ y.keys()))} in only one"
            for k in x:
                assert_same(x[k], y[k], f"{where}[{k!r}]")
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), f"{where}: {len(x)} vs {len(y)} items"
            for i, (u, v) in enumerate(zip(x, y)):
                assert_same(u, v, f"{where}[{i}]")
        elif isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y), where
        else:
            assert x == y, f"{where}: {x!r} != {y!r}"

    # Everything, by key: weights, every optimizer state tensor and hyper-parameter, scaler, RNG streams, counters.
    assert_same(a, b, "checkpoint")
