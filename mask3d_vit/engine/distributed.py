"""Process-group setup from torchrun's environment, and the few collectives tasks need.

Launch one process per device with ``torchrun --nproc_per_node N -m mask3d_vit pretrain ...``; a plain
``python -m mask3d_vit ...`` is a world of one and every helper here is then a no-op.
"""
from __future__ import annotations

import datetime
import gc
import os

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def init_distributed(device: str = "auto") -> torch.device:
    """Join the process group torchrun describes (WORLD_SIZE > 1) and pick this rank's device.

    Args:
        device: "auto" (CUDA if available, else CPU), "cpu" or "cuda".
    Returns:
        The device this process trains on (``cuda:LOCAL_RANK`` under torchrun on GPUs).
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"train.device={device!r}: use auto, cpu or cuda")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is visible; use train.device=cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not is_dist():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        timeout = datetime.timedelta(minutes=30)
        store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
        store.set_timeout(timeout)
        # torchrun's workers of every elastic restart (--max-restarts) meet in the same store: each attempt gets its
        # own keys, or a worker can read the address a killed worker of the failed attempt left there and never
        # connect (gloo: "connectFullMesh failed ... Connection refused").
        attempt = dist.PrefixStore(f"attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/", store)
        # NCCL for GPUs; gloo runs everywhere (CPU tests, CPU clusters).
        dist.init_process_group("nccl" if use_cuda else "gloo", store=attempt, rank=rank, world_size=world_size,
                                timeout=timeout)
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def cleanup() -> None:
    """Leave the process group; call it once training is over, after the Trainer (and its DDP wrapper) is gone."""
    if is_dist():
        # A DDP reducer caught in a reference cycle keeps gloo work that holds tensors; freed at interpreter exit
        # instead of now, it can abort the process ("terminate called without an active exception").
        gc.collect()
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (and return it); identity in one process."""
    if is_dist():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
