"""seqmnist's compiled CPU kernels, built on first use by PyTorch's C++ extension tools.

Two recurrences whose loop over time runs as one call instead of a few small
torch operations a step: ``linear_recurrence`` (scan.cpp), h_t = a_t *
h_{t-1} + b_t for LRU, minGRU and minLSTM, and ``indrnn_forward`` /
``indrnn_backward`` (indrnn.cpp), h_t = relu(a_t + u * h_{t-1}). Chains of
elementwise operations run as one pass over memory instead of many:
minGRU's and minLSTM's gates, ``mingates_forward`` / ``_backward``
(gates.cpp); a Linear's bias with the activation after it, ``bias_gelu_*``
and ``bias_glu_*``, and LRU's readout with its GELU, ``skip_gelu_*``
(activations.cpp); IndRNN's batch norm with its shortcut, ``batch_norm_*``
(norm.cpp). And LEM's nonlinear loop, ``lem_forward`` / ``lem_backward``
(lem.cpp), two matrix products and two fused passes a step, and coRNN's,
``cornn_forward`` / ``cornn_backward`` (cornn.cpp), one of each.

They are built once per source and environment (torch install, Python,
machine type) into ``<cache>/seqmnist/native`` (``$XDG_CACHE_HOME``, else
``~/.cache``), in about 50 s on 2 cores, and loaded from there afterwards.
That needs a C++ compiler, as every PyTorch C++ extension does, and ninja, a
dependency. Where they cannot be built, or ``SEQMNIST_NATIVE=0``,
``available()`` is false and callers use the Python loops, which compute the
same numbers more slowly."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

logger = logging.getLogger("seqmnist")

DISABLE_ENV = "SEQMNIST_NATIVE"  # "0": never build or load the kernels
_SOURCES = tuple(
    Path(__file__).with_name(name)
    for name in (
        "scan.cpp",
        "indrnn.cpp",
        "norm.cpp",
        "gates.cpp",
        "activations.cpp",
        "lem.cpp",
        "cornn.cpp",
    )
)
_HEADERS = tuple(Path(__file__).with_name(name) for name in ("vectorised.h", "parallel.h"))
_LOCK = threading.Lock()
_loaded: bool | None = None  # None: not tried yet in this process
_reason = ""  # why the kernels are not there, when they are not


def linear_recurrence(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, reverse: bool = False
) -> torch.Tensor:
    """The compiled scan (model/scan.py's ``sequential`` engine, same arguments).

    Like every kernel here it raises RuntimeError where ``available()`` is false."""
    return _ops().linear_recurrence(a, b, h0, reverse)


def linear_recurrence_backward(
    a: torch.Tensor, h: torch.Tensor, h0: torch.Tensor | None, grad_h: torch.Tensor,
    need_grad_a: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """dL/db and dL/da of ``linear_recurrence(a, b, h0)`` given h and dL/dh, in one pass
    (model/scan.py's _LinearRecurrence gives the formulas); dL/da None unless asked."""
    grad_b, grad_a = _ops().linear_recurrence_backward(a, h, h0, grad_h, need_grad_a)
    return grad_b, grad_a if need_grad_a else None


def indrnn_forward(a: torch.Tensor, u: torch.Tensor) -> None:
    """h_t = relu(a_t + u * h_{t-1}) written over ``a`` (T, B, H), contiguous; u (H)."""
    _ops().indrnn_forward(a, u)


def indrnn_backward(
    h: torch.Tensor, grad_h: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """From h and dL/dh (T, B, H): dL/dz for z_t = a_t + u h_{t-1} (T, B, H), and dL/du (H)."""
    return _ops().indrnn_backward(h, grad_h, u)


def batch_norm_forward(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
    eps: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Training-mode batch norm over the rows of h (N, C), plus ``residual`` (N, C) if given
    (norm.cpp): (y, mean, invstd, biased variance)."""
    return _ops().batch_norm_forward(h, weight, bias, residual, eps)


def batch_norm_backward(
    grad: torch.Tensor, h: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor,
    invstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """dL/dh, dL/dweight and dL/dbias of ``batch_norm_forward`` given its dL/dy."""
    return _ops().batch_norm_backward(grad, h, weight, mean, invstd)


def mingates_forward(
    logits: torch.Tensor, bias: torch.Tensor, gates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """minGRU's (gates 2) or minLSTM's (gates 3) a and b from their logits (..., gates*H)
    without the bias (gates*H), in one pass (gates.cpp); float32 or float64."""
    return _ops().mingates_forward(logits, bias, gates)


def mingates_backward(
    logits: torch.Tensor, bias: torch.Tensor, gates: int, grad_a: torch.Tensor,
    grad_b: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """dL/dlogits (the bias's gradient is its sum over rows) of ``mingates_forward``,
    given dL/da and dL/db."""
    return _ops().mingates_backward(logits, bias, gates, grad_a, grad_b)


def bias_gelu_forward(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """gelu(x + bias), x (..., C), bias (C), in one pass (activations.cpp); float32 or float64."""
    return _ops().bias_gelu_forward(x, bias)


def bias_gelu_backward(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """dL/dx of ``bias_gelu_forward(x, bias)`` given its dL/dy (dL/dbias is its sum over rows)."""
    return _ops().bias_gelu_backward(grad, x, bias)


def bias_glu_residual_forward(
    x: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor
) -> torch.Tensor:
    """residual + glu(x + bias): x (..., 2C) = [value, gate], bias (2C), residual (..., C)."""
    return _ops().bias_glu_residual_forward(x, bias, residual)


def bias_glu_backward(grad: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """dL/dx of ``bias_glu_residual_forward`` given its dL/dy (the residual's is dL/dy)."""
    return _ops().bias_glu_backward(grad, x, bias)


def skip_gelu_forward(x: torch.Tensor, d: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """gelu(x + d * u): x and u (..., C), d (C), in one pass (activations.cpp)."""
    return _ops().skip_gelu_forward(x, d, u)


def skip_gelu_backward(
    grad: torch.Tensor, x: torch.Tensor, d: torch.Tensor, u: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dL/dx, dL/du and dL/dd of ``skip_gelu_forward(x, d, u)`` given its dL/dy."""
    return _ops().skip_gelu_backward(grad, x, d, u)


def lem_forward(
    drive: torch.Tensor, hidden_weight: torch.Tensor, W_y: torch.Tensor, dt: float,
    for_backward: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """LEM's loop forward: with ``for_backward``, model/lem.py's _run's states and
    derivatives; without, y_1..y_T (T, B, H) alone (two states kept, not T + 1) and an
    empty tensor."""
    return _ops().lem_forward(drive, hidden_weight, W_y, dt, for_backward)


def lem_backward(
    grad_ys: torch.Tensor, derivatives: torch.Tensor, hidden_weight: torch.Tensor,
    W_y: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """LEM's loop backward: the per-step gradients (T, B, 6, H) that lem.py's _Memory
    turns into the drive's and the weights'."""
    return _ops().lem_backward(grad_ys, derivatives, hidden_weight, W_y)


def cornn_forward(
    drive: torch.Tensor, weight: torch.Tensor, dt: float, gamma: float, epsilon: float,
    for_backward: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """coRNN's loop forward: with ``for_backward``, model/cornn.py's _run's states and
    slopes; without, the positions y_1..y_T (T, B, H) alone and an empty tensor."""
    return _ops().cornn_forward(drive, weight, dt, gamma, epsilon, for_backward)


def cornn_backward(
    grad_positions: torch.Tensor, slopes: torch.Tensor, weight: torch.Tensor, dt: float,
    gamma: float, epsilon: float,
) -> torch.Tensor:  # fmt: skip
    """coRNN's loop backward: dL/d drive (T, B, H), given dL/d positions and the slopes."""
    return _ops().cornn_backward(grad_positions, slopes, weight, dt, gamma, epsilon)


def takes(tensor: torch.Tensor) -> bool:
    """Whether a compiled kernel runs for ``tensor``: float32 or float64 on a CPU where the
    kernels could be built, outside ONNX export and tracing (which record torch
    operations, not these)."""
    return (
        tensor.device.type == "cpu"
        and tensor.dtype in (torch.float32, torch.float64)
        and not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())
        and available()
    )


def available() -> bool:
    """Whether the compiled kernels are loaded, building them on the first call if need be."""
    global _loaded, _reason
    if _loaded is not None:
        return _loaded
    with _LOCK:
        if _loaded is None:
            try:
                _load()
                _loaded = True
            except Exception as error:  # no compiler, no cache folder, a failed build
                lines = str(error).strip().splitlines()
                _reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
                if os.environ.get(DISABLE_ENV) != "0":
                    logger.warning(
                        "seqmnist: the native CPU kernels are not available (%s); "
                        "using the Python loops, which compute the same more slowly", _reason,
                    )  # fmt: skip
                _loaded = False
    return _loaded


def _ops():
    if not available():
        raise RuntimeError(f"seqmnist's native kernels are not available ({_reason})")
    return torch.ops.seqmnist


def unavailable_reason() -> str:
    """Why ``available()`` is false ('' when it is true or was not asked)."""
    return _reason


def _load() -> None:
    if os.environ.get(DISABLE_ENV) == "0":
        raise RuntimeError(f"{DISABLE_ENV}=0")
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        # Checked here: PyTorch's builder would first log a long warning of its own.
        raise RuntimeError(f"no C++ compiler ({compiler}) found; install one, e.g. g++")
    from torch.utils import cpp_extension

    folder = _build_folder()
    folder.mkdir(parents=True, exist_ok=True)
    # OpenMP where GCC is the compiler (Linux): at::parallel_for is a header
    # template that splits work only when compiled with it, and the library then
    # shares torch's own libgomp (the same soname, loaded already), so there is
    # one thread pool. Elsewhere (Apple's clang takes no -fopenmp) the kernels
    # run on one thread. No -march=native: a cache folder may outlive this CPU
    # (gates.cpp compiles its loops for several and picks at load time).
    # -fno-trapping-math lets GCC turn the loops' comparisons into vector
    # selects; nothing here reads the floating-point exception flags.
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    with _build_lock(folder), _ninja_on_path():
        if not (folder / "seqmnist_native.so").exists():
            logger.info(
                "seqmnist: building the native CPU kernels once (about a minute) in %s", folder
            )
        cpp_extension.load(
            name="seqmnist_native",
            sources=[str(source) for source in _SOURCES],
            extra_cflags=["-O3", "-fno-trapping-math", *openmp],
            extra_ldflags=openmp,
            build_directory=str(folder),
            is_python_module=False,
            verbose=False,
        )
    _register_fake()


@contextlib.contextmanager
def _build_lock(folder: Path) -> Iterator[None]:
    """One process at a time builds or loads the folder's library.

    PyTorch's builder guards the folder with a lock file it deletes when done,
    so a process killed mid-build leaves one behind and every later process
    waits for it forever. An fcntl lock is released by the kernel when its
    holder dies; while holding it, a builder's lock file is a dead one's.
    """
    import fcntl

    with open(folder / "seqmnist.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)  # cpp_extension's FileBaton, if stale
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _ninja_on_path() -> Iterator[None]:
    """PyTorch's builder runs ``ninja`` from PATH; the ninja wheel (a dependency) puts it in
    its own folder, which is on PATH only in an activated virtual environment."""
    try:
        import ninja
    except ImportError:  # a system ninja may still be on PATH
        yield
        return
    before = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join(filter(None, (ninja.BIN_DIR, before)))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


def _build_folder() -> Path:
    """One folder per source, torch install, Python and machine type, so two environments
    never rebuild (and replace) each other's library."""
    digest = hashlib.sha256()
    for source in (*_SOURCES, *_HEADERS):
        digest.update(source.read_bytes())
    where = (torch.__version__, os.path.dirname(torch.__file__), sys.version, platform.machine())
    digest.update(repr(where).encode())
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return (
        Path(cache) / "seqmnist" / "native" / f"torch-{torch.__version__}-{digest.hexdigest()[:12]}"
    )


def _register_fake() -> None:
    # Shapes for torch.compile and meta tensors.
    def backward_shapes(a, h, h0, grad_h, need_grad_a):
        grad_a = torch.empty_like(a) if need_grad_a else h.new_empty(0)
        return torch.empty_like(h), grad_a

    fakes = {
        "seqmnist::linear_recurrence": lambda a, b, h0, reverse: torch.empty_like(b),
        "seqmnist::linear_recurrence_backward": backward_shapes,
        "seqmnist::indrnn_forward": lambda a, u: None,
        "seqmnist::mingates_forward": lambda logits, bias, gates: (
            logits.new_empty((*logits.shape[:-1], logits.shape[-1] // gates)),
            logits.new_empty((*logits.shape[:-1], logits.shape[-1] // gates)),
        ),
        "seqmnist::mingates_backward": lambda logits, bias, gates, grad_a, grad_b: torch.empty_like(
            logits, memory_format=torch.contiguous_format
        ),
        "seqmnist::bias_gelu_forward": lambda x, bias: torch.empty_like(
            x, memory_format=torch.contiguous_format
        ),
        "seqmnist::bias_gelu_backward": lambda grad, x, bias: torch.empty_like(
            x, memory_format=torch.contiguous_format
        ),
        "seqmnist::bias_glu_residual_forward": lambda x, bias, residual: torch.empty_like(
            residual, memory_format=torch.contiguous_format
        ),
        "seqmnist::bias_glu_backward": lambda grad, x, bias: torch.empty_like(
            x, memory_format=torch.contiguous_format
        ),
        "seqmnist::skip_gelu_forward": lambda x, d, u: torch.empty_like(
            x, memory_format=torch.contiguous_format
        ),
        "seqmnist::skip_gelu_backward": lambda grad, x, d, u: (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(x, memory_format=torch.contiguous_format),
            torch.empty_like(d),
        ),
        "seqmnist::lem_forward": lambda drive, hidden_weight, W_y, dt, for_backward: (
            drive.new_empty((drive.shape[0] + 1, drive.shape[1], 2, W_y.shape[0]))
            if for_backward
            else drive.new_empty((drive.shape[0], drive.shape[1], W_y.shape[0])),
            drive.new_empty(
                (drive.shape[0], drive.shape[1], 6, W_y.shape[0]) if for_backward else (0,)
            ),
        ),
        "seqmnist::lem_backward": lambda grad_ys, derivatives, hidden_weight, W_y: torch.empty_like(
            derivatives
        ),
        "seqmnist::cornn_forward": lambda drive, weight, dt, gamma, epsilon, for_backward: (
            drive.new_empty((drive.shape[0] + 1, drive.shape[1], 2 * drive.shape[2]))
            if for_backward
            else torch.empty_like(drive),
            torch.empty_like(drive) if for_backward else drive.new_empty((0,)),
        ),
        "seqmnist::cornn_backward": lambda grad_positions, slopes, weight, dt, gamma, epsilon: (
            torch.empty_like(slopes)
        ),
        "seqmnist::batch_norm_forward": lambda h, weight, bias, residual, eps: (
            torch.empty_like(h, memory_format=torch.contiguous_format),
            *(h.new_empty(h.shape[1]) for _ in range(3)),
        ),
        "seqmnist::batch_norm_backward": lambda grad, h, weight, mean, invstd: (
            torch.empty_like(h, memory_format=torch.contiguous_format),
            torch.empty_like(weight),
            torch.empty_like(weight),
        ),
        "seqmnist::indrnn_backward": lambda h, grad_h, u: (
            torch.empty_like(h),
            torch.empty_like(u),
        ),
    }
    for name, fake in fakes.items():
        with contextlib.suppress(RuntimeError):  # registered already: a second load
            torch.library.register_fake(name)(fake)
