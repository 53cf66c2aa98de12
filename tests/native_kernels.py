"""Whether the compiled kernels should be here, and the scan methods to test on this machine;
whether torch.compile can build its CPU code here."""

import importlib.util
import os
import shutil
from unittest import mock

import pytest
import torch

from seqmnist.model import native


def native_expected() -> bool:
    """Whether this machine has what PyTorch's C++ extensions need, and the kernel is not turned off."""
    compiler = os.environ.get("CXX", "c++")
    return (
        shutil.which(compiler) is not None
        and (importlib.util.find_spec("ninja") is not None or shutil.which("ninja") is not None)
        and os.environ.get(native.DISABLE_ENV) != "0"
    )


def cpu_methods(*methods: str) -> tuple[str, ...]:
    """``methods`` with "native" added where it is expected here (tests fail if it then fails to build)."""
    return (*methods, "native") if native_expected() else methods


def compiled_loops() -> tuple[bool, ...]:
    """A layer's loop as torch operations (False) and compiled (True) where it builds here."""
    return (False, True) if native_expected() else (False,)


def loop(module, compiled: bool):
    """Within it, ``module``'s layers (lem, cornn) run the Python (False) or compiled loop."""
    return mock.patch.object(module, "compiled_loop_takes", lambda drive: compiled)


def each_loop(module, core, x, upstream, values_and_gradients):
    """(compiled, outputs, gradients, no-grad outputs) of ``core`` on ``x`` for each of
    ``module``'s loops here; inference without gradients takes a path of its own."""
    for compiled in compiled_loops():
        with loop(module, compiled):
            outputs, gradients = values_and_gradients(lambda c, x: c(x), core, x, upstream)
            with torch.no_grad():
                inferred = core(x)
        yield compiled, outputs, gradients, inferred


def assert_compiled_loop_as_close_as_torch(module, core, x, upstream) -> None:
    """``core``'s float32 outputs and gradients (wrt x and every parameter, given the
    outputs' gradient ``upstream``) from ``module``'s compiled loop are as close to
    torch's float64 operations as torch's own float32 operations are, to a factor
    of 2. The reference runs the Python loop, so a kernel is never held to itself."""

    def values_and_gradients(core, x, upstream):
        x = x.detach().requires_grad_()
        outputs = core(x)
        return [outputs, *torch.autograd.grad(outputs, [x, *core.parameters()], upstream)]

    with loop(module, False):
        reference = values_and_gradients(core.double(), x.double(), upstream.double())
        torch_own = values_and_gradients(core.float(), x.float(), upstream.float())
    with loop(module, True):
        compiled = values_and_gradients(core, x.float(), upstream.float())
    for got, torch_got, want in zip(compiled, torch_own, reference):
        torch_error = (torch_got.double() - want).abs().max().item()
        error = (got.double() - want).abs().max().item()
        assert error <= 2 * torch_error + 1e-6 * want.abs().max().item()


# Inductor writes C++ for the CPU and builds it, as the native kernels are built.
needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None,
    reason="torch.compile's CPU code needs a C++ compiler (g++)",
)
