"""Several nodes on one machine (CPU, gloo, loopback rendezvous): a packed store in a shared folder read by every
rank of a 2-node torchrun, each rank reading only its shard; and an elastic restart after a worker is SIGKILLed that
ends with the weights of an undisturbed run."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import finish, require_extra
from test_formats_frames import write_frames

from mask3d_vit.checkpoint import list_checkpoints, load_latest
from mask3d_vit.data.build import SourceConfig
from mask3d_vit.engine.data import ResumableSampler

require_extra("litdata")
from mask3d_vit.data.packed import pack  # noqa: E402 (after the extra's check)

HERE = Path(__file__).parent
FRAMES = 16
EPOCHS = 2
ARGS = ["data.size=[32,48]", "model.img_size=[32,48]", "model.encoder=vit_micro_patch16", "model.decoder_dim=32",
        "model.depth_dim=32", "model.decoder_depth=1", "model.depth_blocks=1", f"train.epochs={EPOCHS}",
        "train.batch_size=4", "train.ckpt_every=1", "train.keep_ckpts=8", "train.log_every=1", "train.precision=fp32",
        "train.device=cpu", "train.num_workers=0", "data.check_units=false", "data.cache=false", "val_batches=0",
        "optim.base_lr=1e-2"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A packed store in a folder every node reads (the shared file system of a cluster)."""
    root = tmp_path_factory.mktemp("shared")
    pack(SourceConfig("frames", root=str(write_frames(root / "frames", n=FRAMES, h=64, w=96))), root / "packed",
         splits=("all",))
    return root / "packed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*options, out, store, extra=()):
    """A torchrun process training on ``store`` in its own session (killed with its workers on a timeout)."""
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", *options, str(HERE / "packed_worker.py"), "pretrain",
           "--out", str(out), *extra, f"data.sources=[{{format: packed, root: '{store}', split: all}}]", *ARGS]
    out.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_two_nodes_read_one_shared_store_each_rank_its_own_shard(tmp_path, store):
    port = free_port()
    nodes = [torchrun("--nnodes", "2", "--node_rank", str(rank), "--nproc_per_node", "1", "--master_addr",
                      "127.0.0.1", "--master_port", str(port), out=tmp_path / "run", store=store) for rank in (0, 1)]
    for node in nodes:
        finish(node)
    assert load_latest(tmp_path / "run")[1]["world_size"] == 2
    reads = {}
    for rank in (0, 1):
        sampler = ResumableSampler(FRAMES, shuffle=True, seed=0, rank=rank, world_size=2)
        expected = []
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            expected += list(sampler)
        reads[rank] = [int(v) for v in (tmp_path / "run" / f"reads_rank{rank}.txt").read_text().split()]
        if rank == 0:  # the main rank first reads the figure batch: the first 4 frames
            assert reads[0][:4] == [0, 1, 2, 3]
            reads[0] = reads[0][4:]
        assert reads[rank] == expected  # exactly its shard of each epoch, in the sampler's order
    for epoch in range(EPOCHS):
        half = FRAMES // 2
        assert not set(reads[0][epoch * half:(epoch + 1) * half]) & set(reads[1][epoch * half:(epoch + 1) * half])


def workers_of(proc) -> list[int]:
    """Process ids of the worker processes a torchrun agent started (its children)."""
    kids = []
    for task in Path(f"/proc/{proc.pid}/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc (Linux)")
def test_an_elastic_restart_after_a_sigkill_ends_with_the_undisturbed_weights(tmp_path, store):
    single_node = ["--standalone", "--nproc_per_node", "2"]
    finish(torchrun(*single_node, out=tmp_path / "straight", store=store))
    victim = torchrun(*single_node, "--max-restarts", "1", out=tmp_path / "killed", store=store,
                      extra=["--resume", "auto"])
    deadline = time.time() + 300
    while not list_checkpoints(tmp_path / "killed") or len(list_checkpoints(tmp_path / "killed")) < 2:
        assert victim.poll() is None and time.time() < deadline, "the run ended before a worker could be killed"
        time.sleep(0.05)
    os.kill(max(workers_of(victim)), signal.SIGKILL)  # one of the two workers
    out = finish(victim)
    assert "resumed from" in out, out
    a, b = load_latest(tmp_path / "straight")[1], load_latest(tmp_path / "killed")[1]
    assert a["step"] == b["step"] == EPOCHS * FRAMES // 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
