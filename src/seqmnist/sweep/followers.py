"""A sweep worker that is a torchrun job: rank 0 hands each trial to the other ranks.

Rank 0 alone talks to the study. Before it trains a trial it hands the
trial's configuration to the other ranks, which wait in ``follow_trials``
and train it with it as one run. Whenever rank 0 leaves its loop outside a
training (the budget spent, a stop between trials, an error), it tells them
to end with its exit status, so no rank waits on one that has gone. They
wait on a process group of their own with a long timeout: between trials
rank 0 may spend minutes on the study (a shared server, a lock).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqmnist.config import RunConfig
from seqmnist.distributed import Ranks, broadcast
from seqmnist.errors import SeqmnistError, TrainingInterrupted
from seqmnist.training import StopRequests
from seqmnist.training import train as train_config

PATIENCE = datetime.timedelta(days=7)


class Followers:
    """The other ranks of this torchrun job, as rank 0 (or any rank) sees them."""

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        # Created now, on every rank in the same order, as torch.distributed requires.
        self._group = _patient_group() if ranks.distributed else None
        self.listening = ranks.distributed  # waiting for rank 0's next word

    def hand(self, job: dict[str, Any]) -> None:
        """From rank 0: train this trial with me."""
        if self.listening:
            self._send({"job": job})

    def stopped_with_us(self) -> None:
        """The trial's training ended where the others are not listening: every rank
        stopped at once and left, or this rank failed alone (the job then ends)."""
        self.listening = False

    @contextlib.contextmanager
    def released_on_exit(self) -> Iterator[None]:
        """Tell the followers to end, with the status rank 0 ends with, however it ends."""
        status = 1
        try:
            yield
            status = 0
        except TrainingInterrupted as stopped:
            status = stopped.exit_code
            raise
        finally:
            if self.listening:
                self.listening = False
                # While another error is on its way out, its line is the one to say.
                with contextlib.suppress(Exception) if status else contextlib.nullcontext():
                    self._send({"end": status})

    def receive(self) -> dict[str, Any]:
        return self._send(None)

    def _send(self, message: dict[str, Any] | None) -> dict[str, Any]:
        return broadcast(message, self.ranks, self._group)


def follow_trials(followers: Followers, stop: StopRequests | None) -> int:
    """A rank other than 0: train each trial rank 0 hands out; returns rank 0's exit status."""
    while "job" in (message := followers.receive()):
        job = message["job"]
        try:
            train_config(
                RunConfig.from_dict(job["config"]), Path(job["run_dir"]), progress=False,
                resume=job["resume"], stop=stop,
            )  # fmt: skip
        except TrainingInterrupted:
            raise  # every rank stopped at the same step
        except SeqmnistError:
            pass  # every rank failed alike (diverged, say): rank 0 records the reason
    return message["end"]


def _patient_group():
    import torch.distributed as dist

    return dist.new_group(backend="gloo", timeout=PATIENCE)
