"""Data-parallel helpers for ``torchrun``: process-group set-up, sharding, reductions.

``torchrun --nproc_per_node N -m grainseg train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the trainer
then joins a process group (NCCL on CUDA, gloo on CPU), wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel`, gives every rank its share of each epoch's
permutation and sums validation statistics over ranks.  Without those variables everything is a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "shard_indices", "all_reduce_sum", "barrier", "broadcast_flag", "cleanup"]


@dataclass
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` for the GPU index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL for CUDA, gloo otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    here = False
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        here = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, here)


def shard_indices(order: Sequence[int], info: DistInfo) -> List[int]:
    """This rank's share of ``order``: padded (by wrapping) to a multiple of world_size, then strided."""
    order = list(order)
    if not info.enabled:
        return order
    pad = (-len(order)) % info.world_size
    order = order + order[:pad]
    return order[info.rank::info.world_size]


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> List[float]:
    """Sum a list of numbers over ranks (identity without a process group)."""
    if not info.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group if this module created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()
