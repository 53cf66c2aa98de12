"""One run over many processes: torchrun's environment, the process group, the collectives.

`torchrun --nproc-per-node N -m seqmnist train ...` starts N copies of the
command with RANK, WORLD_SIZE and LOCAL_RANK set. Each joins one process
group (gloo on the CPU, NCCL on CUDA) and trains its slice of every global
batch; gradients are averaged by DistributedDataParallel, so N processes
follow the optimisation of one. A single process (no WORLD_SIZE) never
touches torch.distributed.
"""

from __future__ import annotations

import datetime
import gc
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads the ranks before it
    import torch

# A rank that stops answering (it died) ends every collective after this long.
TIMEOUT = datetime.timedelta(seconds=60)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run folder, the progress and the logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


ONE_PROCESS = Ranks()


def environment_ranks() -> Ranks:
    """The ranks torchrun gave this process; one process alone without it."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return ONE_PROCESS
    return Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def join(ranks: Ranks, device: torch.device) -> None:
    """Join the process group of a torchrun launch (once; later calls change nothing)."""
    import torch.distributed as dist

    if ranks.distributed and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)


def leave_process_group(together: bool) -> None:
    """Leave the process groups if this process joined one (torch is not imported for it).

    Gloo's threads must be done with their last collective before the
    interpreter goes (else the process aborts on the way out): ``together``,
    every rank first waits for the others at a barrier (at most TIMEOUT if one
    has gone). A rank that failed leaves at once.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return
    if together:
        dist.barrier()
    dist.destroy_process_group()
    # destroy_process_group only forgets the groups; whatever reference cycles
    # still hold (tensors, work objects) goes at the next collection, which
    # may otherwise come in the interpreter's finalization, where a gloo
    # thread's last tensor wants the GIL and the process aborts (pytorch#179291
    # proposes destroying groups before finalization for that reason). A
    # precaution: the abort ("terminate called without an active exception")
    # came in 2 of 2 full test runs on 2026-12-01, never in 56 runs of those
    # tests alone, and its cause was not found.
    gc.collect()


def all_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum of ``tensor`` over every rank (itself where there is one process)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_max(values: list[int], ranks: Ranks, device: torch.device) -> list[int]:
    """Each of ``values``' largest over every rank: a stop that any rank was asked for."""
    if not ranks.distributed:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(value) for value in tensor.tolist()]


def broadcast(value: object, ranks: Ranks, group=None) -> object:
    """Rank 0's ``value``, on every rank (a plain object: pickled on the way), over
    ``group`` (default: the launch's own)."""
    if not ranks.distributed:
        return value
    import torch.distributed as dist

    holder = [value]
    dist.broadcast_object_list(holder, src=0, group=group)
    return holder[0]


def gather(value: object, ranks: Ranks) -> list[object]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not ranks.distributed:
        return [value]
    import torch.distributed as dist

    values: list[object] = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's own random draws (dropout): rank 0 keeps the run's seed.

    Each process draws dropout masks for its own slice of the batch; with one
    seed for all, every slice would get the same masks.
    """
    return seed if rank == 0 else (seed + 0x9E3779B97F4A7C15 * rank) % 2**63


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()
