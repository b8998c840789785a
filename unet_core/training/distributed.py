"""torch.distributed for training launched by ``torchrun``: one process per GPU (or CPU slot).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; when they are present (and the world
has more than one process) we join a process group (NCCL on CUDA, gloo otherwise), shard the
data with DistributedSampler (``build_loaders(distributed=True)``), wrap the model in DDP,
reduce validation sums across ranks, and let rank 0 alone write checkpoints, logs and progress.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job (single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistContext:
    """The torchrun variables of this process (rank 0 of 1 when not launched by torchrun)."""
    if not all(v in os.environ for v in TORCHRUN_VARS):
        return DistContext()
    return DistContext(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
    )


def init(ctx: DistContext, device: torch.device) -> None:
    """Join the process group for ``ctx`` (no-op for a single process or if already joined)."""
    import torch.distributed as dist

    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        import torch

        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend=backend,
        rank=ctx.rank,
        world_size=ctx.world_size,
        timeout=datetime.timedelta(minutes=30),
    )


def shutdown() -> None:
    """Leave the process group if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: DistContext, device: torch.device) -> torch.nn.Module:
    """DDP around ``model`` when distributed (parameters are broadcast from rank 0)."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over every rank (identity for a single process)."""
    if not ctx.enabled:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def any_rank(flags: list[bool], ctx: DistContext, device: torch.device) -> list[bool]:
    """Element-wise OR of ``flags`` over every rank, so all ranks stop together."""
    if not ctx.enabled:
        return list(flags)
    sums = all_reduce_sum([1.0 if f else 0.0 for f in flags], ctx, device)
    return [s > 0 for s in sums]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op for a single process)."""
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def set_epoch(loader: object, epoch: int) -> None:
    """Give a DistributedSampler its epoch so every epoch is shuffled differently."""
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
