"""Whether a run's training step goes through torch.compile, and the eager fallback.

torch.compile traces a family's forward and backward whole (the native
kernels have fake registrations, so they do not break the graph), and
inductor fuses the elementwise work the kernels leave: LayerNorm, residual
adds and, under bf16 autocast, the casts around every matrix product. It
pays only for some families, in some precisions, and only in runs long
enough to repay the compile itself. Measured side by side in one process
(benchmarks/compile_ab.py; BENCHMARKS.md, "torch.compile"), 2 cores, batch
128, compiled step time over eager:

- AMD EPYC with AVX-512 BF16, bf16 (what --precision auto picks there): by
  pixels LRU 0.77, minGRU 0.95; by rows LRU, minGRU, minLSTM and IndRNN
  0.73-0.81, coRNN and LEM 0.96-1.02 (their loops are native kernels
  already: nothing is left to fuse).
- In fp32 it does not pay where it matters. By rows 0.78-0.96 on an AVX2
  AMD EPYC and 0.88-0.94 with AVX-512, but by pixels, the only runs long
  enough to repay compiling, 0.95-1.12 (AVX2: minGRU and minLSTM slower).

Compiling took 5-55 s uncached, 1-9 s from inductor's cache. A run repays a
minute of it only after about 1e9 sample-steps (training samples x sequence
length): a pixel preset (100 epochs at 784 steps, 4e9) does, a row preset
(10 epochs at 28 steps, 1.5e7) never would, even at 0.75.

``auto`` therefore compiles the families whose registry entry names the
run's precision (``compile_pays``), on a CPU, outside torchrun, for runs of
at least ``AUTO_SAMPLE_STEPS``. The decision depends only on the
configuration and the runtime, so a resumed run takes the same path as the
run it continues. ``on`` compiles whatever the run; ``off`` never does. A
step that fails to compile (no C++ compiler, an operator inductor cannot
lower) warns once and goes on eagerly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from seqmnist.config import RunConfig
from seqmnist.errors import RunError
from seqmnist.model import native
from seqmnist.model.registry import family
from seqmnist.runtime import Runtime, random_state, set_random_state

logger = logging.getLogger("seqmnist.train")

# Sample-steps (training samples x sequence length) from which ``auto`` compiles.
AUTO_SAMPLE_STEPS = 10**9


@dataclass(frozen=True)
class CompileChoice:
    compiled: bool
    reason: str  # one phrase, for summary.json and the log

    def to_dict(self) -> dict[str, object]:
        return {"compiled": self.compiled, "reason": self.reason}


def choose(
    config: RunConfig, runtime: Runtime, total_steps: int, sequence_length: int
) -> CompileChoice:
    """What ``config.train.compile`` means for this run on this runtime."""
    asked = config.train.compile
    if asked == "off":
        return CompileChoice(False, "--compile off")
    if asked == "on":
        return CompileChoice(True, "--compile on")
    cell = config.model.cell
    if runtime.precision not in family(cell).compile_pays:
        return CompileChoice(
            False, f"auto: a compiled {cell} step in {runtime.precision} was not measured to pay"
        )
    if runtime.device.type != "cpu":
        return CompileChoice(False, f"auto: measured on CPUs only, not on {runtime.device.type}")
    if runtime.ranks.distributed:
        return CompileChoice(False, "auto: not under torchrun")
    sample_steps = total_steps * config.train.batch_size * sequence_length
    if sample_steps < AUTO_SAMPLE_STEPS:
        return CompileChoice(
            False, f"auto: {sample_steps:.1e} sample-steps would not repay compiling"
        )
    return CompileChoice(
        True, f"auto: {cell} in {runtime.precision}, {sample_steps:.1e} sample-steps"
    )


class Forward:
    """The model's forward for training steps: compiled, until compiling fails, then eager.

    ``attempt(step)`` runs a training step's forward, loss and backward
    (inductor compiles the backward on its first call) through the compiled
    forward; if that raises, it warns once, gives back the random state the
    step began with, and runs the step again eagerly. The optimizer's step
    comes after: the retry starts from the same weights. Under torchrun
    (``fall_back`` False) a failure is a RunError instead: DDP's reducer has
    begun the failed backward, and the ranks must not take different paths.
    """

    def __init__(
        self,
        model: nn.Module,
        compiled: bool,
        backend: str | Callable = "inductor",
        fall_back: bool = True,
    ) -> None:
        self.model = model
        self.compiled: Callable | None = None
        self.failure = ""  # why compiling failed, once it has
        self.fall_back = fall_back  # False: a failure is a RunError instead
        if compiled:
            # The native kernels are loaded before tracing: their first load
            # builds them under a lock, which dynamo cannot trace through.
            native.available()
            # Inductor says it leaves LRU's complex products to eager kernels and that
            # this "may be worse than eager"; measured in bf16, the step is faster. One filter
            # for the process, not a catch_warnings per step, which threads would race.
            warnings.filterwarnings("ignore", message=".*complex operators", category=UserWarning)
            self.compiled = torch.compile(model, backend=backend, dynamic=False)

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def attempt(self, step: Callable[[Callable], object], device: torch.device):
        if self.compiled is None:
            return step(self.model)
        state = random_state(device)
        try:
            return step(self.compiled)
        except Exception as error:  # noqa: BLE001 - any failure to compile; eager says if real
            cause = _first_cause(error)
            if not self.fall_back:
                raise RunError(
                    f"torch.compile failed ({cause}); train with --compile off"
                ) from error
            logger.warning(
                "seqmnist: torch.compile failed (%s); training eagerly instead, "
                "which computes the same; --compile off skips trying", cause,
            )  # fmt: skip
            self.give_up(cause)
            set_random_state(device, state)
            return step(self.model)

    def give_up(self, failure: str) -> None:
        """Run eagerly from now on, because of ``failure`` (also a resumed run's, so it
        goes on as the run it continues did)."""
        self.compiled = None
        self.failure = failure


def _first_cause(error: BaseException) -> str:
    """The error that set off the failure, in one line: dynamo wraps the real one."""
    while (inner := getattr(error, "inner_exception", None) or error.__cause__) is not None:
        error = inner
    first_line = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {first_line}"
