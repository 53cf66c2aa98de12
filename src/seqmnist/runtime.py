"""The runtime: device, precision and threads, decided once and recorded in the run.

Every entry point (train, eval, bench, predict, export) builds one ``Runtime``
and passes it down; nothing below it decides precision or device again.

Only training steps use the runtime's precision. Every reported figure
(validation, the model kept as best on validation, test, ``seqmnist eval``)
is computed in fp32 by the one evaluation loop: the same weights give the
same figures whether or not training used bf16, and ``seqmnist eval`` on the
same device and thread count reproduces a run's summary exactly. It costs
little: evaluation is a forward pass over 15,000 images per epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from seqmnist.allocation import heap_kept_for_command
from seqmnist.config import PRECISIONS
from seqmnist.distributed import ONE_PROCESS, Ranks, environment_ranks, join
from seqmnist.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str  # of training steps' matrix products: "fp32" or "bf16"
    threads: int  # PyTorch's intra-op CPU threads
    ranks: Ranks = (
        ONE_PROCESS  # this process's place in a torchrun launch (one process: rank 0 of 1)
    )

    @classmethod
    def resolve(
        cls, device: str = "auto", precision: str = "auto", threads: int | None = None
    ) -> Runtime:
        """Decide ``auto`` choices for this machine; ``threads`` None keeps PyTorch's choice."""
        torch_device = resolve_device(device)
        if threads is not None:
            torch.set_num_threads(threads)
        return cls(
            torch_device, resolve_precision(precision, torch_device), torch.get_num_threads()
        )

    @classmethod
    def for_training(cls, train_config: Any) -> Runtime:
        """The runtime a TrainConfig asks for (its device, precision and threads fields).

        Under torchrun it joins the launch's process group, and on CUDA each
        process takes the GPU of its local rank.
        """
        ranks = environment_ranks()
        device = train_config.device
        if ranks.distributed and resolve_device(device).type == "cuda":
            device = f"cuda:{ranks.local_rank}"
        runtime = cls.resolve(device, train_config.precision, train_config.threads)
        runtime = dataclasses.replace(runtime, ranks=ranks)
        join(ranks, runtime.device)
        return runtime

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context a training step's forward pass runs in."""
        return autocast(self.device, self.precision)

    def to_dict(self) -> dict[str, Any]:
        """What was decided, for summary.json and benchmark results."""
        return {
            "device": str(self.device),
            "device_name": device_name(self.device),
            "precision": self.precision,
            "evaluation_precision": "fp32",
            "threads": self.threads,
            "bf16_hardware": bf16_hardware(self.device),
            "cpu_flags": cpu_flags(),
            "torch_version": torch.__version__,
            "denormals_flushed": denormals_flushed(),
            "world_size": self.ranks.world_size,
        }


@contextlib.contextmanager
def process_settings_for_command() -> Iterator[None]:
    """What every command that computes runs under: subnormals flushed (below) and
    the memory it frees kept for its next steps (allocation.py)."""
    with heap_kept_for_command(), denormals_flushed_for_command():
        yield


@contextlib.contextmanager
def denormals_flushed_for_command() -> Iterator[None]:
    """Treat subnormal floats as zero while one command runs (the CLI wraps each in this).

    Gradients through hundreds of steps decay into the subnormal range, where
    x86 arithmetic traps to microcode: nn.LSTM's training step at 784 steps
    took 10.4 s with them and 1.0 s flushed (batch 128, 1 thread, Intel
    Xeon, AVX-512F). x86 keeps the mode per thread and a new thread copies its
    creator's, so this must begin before torch starts its OpenMP workers
    (flushed afterwards, the workers kept computing with subnormals: 2
    threads stayed at 7-18 s a step). Values below 1.2e-38 become 0, which no
    figure here can see. The mode is process state, so a library call never
    sets it; the command restores it when done.
    """
    before = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def denormals_flushed() -> bool:
    """Whether this thread treats subnormal floats as zero."""
    return torch.tensor([1e-40]).mul(1.0).item() == 0.0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda was asked for but no CUDA GPU is available; use cpu or auto"
        )
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is bf16 where the hardware multiplies bf16 fast, else fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if bf16_hardware(device) else "fp32"
    # CPUs with AVX-512 BF16 or AMX; elsewhere bf16 is emulated and slower than fp32.
    return "bf16" if bf16_hardware(device) and onednn_bf16_lstm_works() else "fp32"


def bf16_hardware(device: torch.device) -> bool:
    """Whether this device multiplies bf16 natively (on a CPU: AVX-512 BF16 or AMX).

    Not oneDNN's ``_is_mkldnn_bf16_supported``: that is true on any AVX-512
    CPU, where oneDNN emulates bf16 and a bf16 LSTM step was 3x slower than fp32.
    """
    if device.type == "cuda":
        # Ampere (compute capability 8.0) and later; is_bf16_supported() also counts
        # the emulation older GPUs offer.
        return torch.cuda.get_device_capability(device) >= (8, 0)
    checks = [
        getattr(torch.cpu, name, None)
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    if all(check is None for check in checks):  # a PyTorch without these probes
        return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
    return any(check() for check in checks if check is not None)


@functools.cache
def onednn_bf16_lstm_works() -> bool:
    """Whether oneDNN runs a bf16-autocast LSTM here, forward and backward.

    Reported bf16 hardware is not enough: some builds have no bf16 LSTM
    primitive for it. A tiny trial, once per process, keeps ``auto`` on fp32
    rather than failing mid-training. It draws its weights from a forked
    generator: whenever it first runs, it must not move the global random
    state a run's dropout depends on, or a resumed run would differ.
    """
    with torch.random.fork_rng(devices=[]):
        layer = torch.nn.LSTM(4, 4, batch_first=True)
        try:
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                outputs, _ = layer(torch.zeros(2, 3, 4))
            outputs.float().sum().backward()
        except RuntimeError:
            return False
    return True


RandomState = tuple[torch.Tensor, torch.Tensor | None]


def random_state(device: torch.device) -> RandomState:
    """Torch's global generator's state, and the device's where it is a GPU."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def set_random_state(device: torch.device, state: RandomState) -> None:
    """Give back what ``random_state`` took."""
    torch.set_rng_state(state[0])
    if state[1] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state[1], device)


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """fp32 matrix products with no TF32 shortcut (Ampere GPUs take it by default)."""
    if not torch.cuda.is_available():
        yield
        return
    # Set and restored directly: torch.backends.cudnn.flags() would also reset cuDNN's
    # other switches (it disables cuDNN unless told otherwise).
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast runs the matrix products in bfloat16; fp32 turns it off."""
    if precision != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if device.type == "cpu" and not onednn_bf16_lstm_works():
        # Some CPUs and builds have no oneDNN bf16 LSTM primitive ("could not
        # create a primitive descriptor"); PyTorch's native kernels emulate it.
        stack.enter_context(_onednn_disabled())
    stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
    return stack


@contextlib.contextmanager
def _onednn_disabled() -> Iterator[None]:
    previous = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = previous


# The instruction-set extensions that decide which kernels oneDNN runs.
NOTABLE_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """This CPU's notable flags, so a figure can say what it ran on."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in NOTABLE_CPU_FLAGS if flag in present]
    except OSError:
        pass
    return []


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
