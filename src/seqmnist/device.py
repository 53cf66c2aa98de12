"""Choosing the device and the autocast precision."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from seqmnist.errors import ConfigError


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
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    # CPUs with AVX-512 BF16 or AMX; elsewhere bf16 is emulated and slower than fp32.
    fast = torch.ops.mkldnn._is_mkldnn_bf16_supported() and onednn_bf16_lstm_works()
    return "bf16" if fast else "fp32"


@functools.cache
def onednn_bf16_lstm_works() -> bool:
    """Whether oneDNN runs a bf16-autocast LSTM here, forward and backward.

    Reported bf16 hardware is not enough: some builds have no bf16 LSTM
    primitive for it. A tiny trial, once per process, keeps ``auto`` on fp32
    rather than failing mid-training.
    """
    layer = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            outputs, _ = layer(torch.zeros(2, 3, 4))
        outputs.float().sum().backward()
    except RuntimeError:
        return False
    return True


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast runs the matrix products in bfloat16; fp32 turns it off."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # Without bf16 hardware oneDNN has no bf16 LSTM primitive ("could not
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
