"""Whether the compiled kernels should be here, and the scan methods to test on this machine."""

import importlib.util
import os
import shutil
from unittest import mock

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
