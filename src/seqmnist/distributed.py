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
import os
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


def all_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """The sum of ``tensor`` over every rank (itself where there is one process)."""
    if ranks.distributed:
        import torch.distributed as dist

        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_max(value: int, ranks: Ranks, device: torch.device) -> int:
    """The largest of one integer per rank: a stop signal that any rank received."""
    if not ranks.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()
