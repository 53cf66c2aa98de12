"""Exact ways to compute the linear recurrence h_t = a_t * h_{t-1} + b_t over time.

The recurrences of LRU (a complex, constant over time), minGRU and minLSTM
(a real, in (0, 1), one per step) are all this one. Every method here gives
the same numbers up to rounding; they differ only in how the work is laid out:

- ``loop``: a plain Python loop that autograd records step by step. The
  reference every other method is tested against; too slow to train with.
- ``sequential``: the same loop with a hand-written backward (itself a linear
  recurrence run backwards), so autograd records one node instead of 2T.
  T small elementwise operations; the cheapest on a CPU at every length.
- ``native``: the same loop compiled (model/native/scan.cpp): the whole
  recurrence in one call, split over the batch across torch's threads. CPU
  only, and only where the kernel could be built; the CPU's choice then.
- ``chunked``: time cut into chunks of about sqrt(T) steps; the loop runs
  inside all chunks at once, a second loop carries each chunk's final state
  into the next, and the first loop runs again from the true entering
  states. About 3*sqrt(T) operations instead of T, on tensors sqrt(T) times
  larger, and only products of the a's (never a division), so
  it is safe for any |a| <= 1, zeros included. For devices where each
  operation costs a kernel launch.
- ``log_linear_recurrence``: Heinsen's log-space scan, as Feng et al. 2024
  train minGRU and minLSTM, for positive a and b. Exact in exact arithmetic,
  but it subtracts running sums of log a, so with long sequences and
  saturated gates it loses precision in float32, and on a CPU it is 15-30x
  slower than the loop (below); it is kept as the paper's method and tested
  like the rest, not chosen automatically.

All tensors are (batch, time, *state): time is dim 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from seqmnist.model import native

METHODS = ("auto", "loop", "sequential", "native", "chunked")

# On a CPU the sequential loop wins at every length measured: forward and
# backward, batch 128, 64 units, one thread of the 2-core Xeon, in ms,
#     steps               16    28    64   128   784
#     real, a per step   0.58  1.25  2.9   6.9    52   sequential
#                        0.92  1.68  4.1   8.9    69   chunked
#                        19.9  34.9  84   161    973   log-space
#     complex, a fixed   0.91  1.76  5.6  13.5    79   sequential
#                        1.40  2.42  7.0  17.7   129   chunked
# Each of its steps is a (B, S) multiply-add that stays in cache, while the
# chunked form streams the whole sequence through memory twice; with two
# threads its large operations also wait on OpenMP whenever the other core is
# busy (784 steps, real: 72 ms sequential, 962 ms chunked). In whole models
# (3 blocks, ~80k parameters, training steps) sequential was as fast or
# faster: LRU at 784 steps 115 against 103 samples/s. The native kernel is
# that loop without a dispatch per step: forward only, batch 128, 64 units,
# 2 threads, the Xeon again, in ms,
#     steps               28    784
#     real, a per step   0.31   15.8   sequential
#                        0.05    2.6   native
#     complex, a fixed   0.54   41.2   sequential
#                        0.16   18.4   native
# so a CPU takes it wherever it could be built. On a GPU every operation
# costs a launch, so the fewest operations win: chunked.

Engine = Callable[..., torch.Tensor]  # (a, b, h0, reverse=False) -> h


def linear_recurrence(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, method: str = "auto"
) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for t = 1..T over dim 1 of ``b`` (B, T, *S); returns h (B, T, *S).

    ``a`` is either (B, T, *S), one coefficient per step, or (*S), one for
    every step and row (LRU's eigenvalues). ``h0`` (B, *S) is the state before
    the first step; None means zeros. Real or complex; ``method`` is one of
    METHODS, and ``auto`` picks the cheapest for the length and device.
    """
    if torch.jit.is_tracing():
        # ONNX export traces the forward; the other methods write into views
        # of one buffer, which the tracer does not carry into the graph.
        return _loop(a, b, h0)
    _check(a, b, h0)
    if method == "auto":
        method = choose_method(b.shape[1], b.device)
    if method == "loop":
        return _loop(a, b, h0)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    engine = _ENGINES[method]
    inputs = (a, b) if h0 is None else (a, b, h0)
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in inputs):
        return _LinearRecurrence.apply(a, b, h0, engine)
    return engine(a, b, h0)


def choose_method(steps: int, device: torch.device) -> str:
    """The cheapest exact method for ``steps`` time steps on ``device`` (measured above)."""
    if device.type != "cpu":
        return "chunked"
    return "native" if native.available() else "sequential"


def log_linear_recurrence(
    log_a: torch.Tensor, log_b: torch.Tensor, log_h0: torch.Tensor | None = None
) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t for positive a, b and h0, from their logarithms (B, T, *S); returns h.

    Heinsen's scan (2023) as Feng et al. 2024 write it: with A_t = a_1...a_t,
    h_t = A_t * (h0 + sum_{s<=t} b_s / A_s), every term summed in log space.
    ``log_h0`` (B, *S); None means h0 = 0.
    """
    log_decay = torch.cumsum(log_a, dim=1)  # (B, T, *S): log A_t
    terms = log_b - log_decay  # (B, T, *S): log (b_s / A_s)
    if log_h0 is not None:
        terms = torch.cat((log_h0.unsqueeze(1), terms), dim=1)  # (B, 1 + T, *S)
        return torch.exp(log_decay + torch.logcumsumexp(terms, dim=1)[:, 1:])
    return torch.exp(log_decay + torch.logcumsumexp(terms, dim=1))


def _check(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> None:
    if b.dim() < 2:
        raise ValueError(f"b must be (batch, time, ...), got shape {tuple(b.shape)}")
    if a.shape != b.shape and a.shape != b.shape[2:]:
        raise ValueError(
            f"a must have b's shape {tuple(b.shape)} or its state shape {tuple(b.shape[2:])}, "
            f"got {tuple(a.shape)}"
        )
    if h0 is not None and h0.shape != b.shape[:1] + b.shape[2:]:
        raise ValueError(f"h0 must be (batch, *state), got {tuple(h0.shape)}")


def _loop(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    varying = a.dim() == b.dim()
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0  # (B, *S)
    states = []
    for t in range(b.shape[1]):
        h = (a[:, t] if varying else a) * h + b[:, t]
        states.append(h)
    return torch.stack(states, dim=1)  # (B, T, *S)


def _sequential(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool = False
) -> torch.Tensor:
    """One fused multiply-add per step, written straight into the output.

    ``reverse`` runs h_t = a_{t+1} * h_{t+1} + b_t from the last step back
    (h_T = 0), the form backpropagation needs, without flipping anything.
    """
    varying = a.dim() == b.dim()
    steps = b.shape[1]
    out = torch.empty_like(b)  # (B, T, *S)
    outs, bs = out.unbind(1), b.unbind(1)  # T views each, taken in one call
    coefficients = a.unbind(1) if varying else (a,) * steps
    if reverse:
        outs[-1].copy_(bs[-1])
        for t in range(steps - 2, -1, -1):
            torch.addcmul(bs[t], coefficients[t + 1], outs[t + 1], out=outs[t])
        return out
    if h0 is None:
        outs[0].copy_(bs[0])
    else:
        torch.addcmul(bs[0], coefficients[0], h0, out=outs[0])
    for t in range(1, steps):
        torch.addcmul(bs[t], coefficients[t], outs[t - 1], out=outs[t])
    return out


def _chunk_length(steps: int) -> int:
    # About sqrt(T) steps per chunk (2L + T/L operations in all); a divisor
    # of T when one is near, so 28 and 784 need no padding.
    root = math.isqrt(steps)
    for length in range(root, min(steps, 2 * root) + 1):
        if length and steps % length == 0:
            return length
    return max(1, root)


def _chunked(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool = False
) -> torch.Tensor:
    """Chunks of L steps: a zero-state pass inside every chunk at once, the
    chunk boundaries carried in a loop over chunks, then the pass again from
    the true entering states. Only products of a's, never a division."""
    batch, steps = b.shape[:2]
    state = b.shape[2:]
    length = _chunk_length(steps)
    chunks = -(-steps // length)
    pad = chunks * length - steps
    varying = a.dim() == b.dim()
    if pad:  # steps past the end: b = 0 and a = 1 leave the real steps as they are
        b = torch.cat((b, b.new_zeros((batch, pad, *state))), dim=1)
        if varying:
            a = torch.cat((a, a.new_ones((batch, pad, *state))), dim=1)
    b = b.reshape(batch, chunks, length, *state)  # (B, C, L, *S)
    if varying:
        a = a.reshape(batch, chunks, length, *state)  # (B, C, L, *S)
    out = torch.empty_like(b)  # (B, C, L, *S)
    steps_of = (lambda x: x.unbind(2)) if varying else (lambda x: (x,) * length)
    coefficients, outs, bs = steps_of(a), out.unbind(2), b.unbind(2)

    if reverse:
        # Pass 1: each chunk from a zero state at its end.
        outs[-1].copy_(bs[-1])
        for step in range(length - 2, -1, -1):
            torch.addcmul(bs[step], coefficients[step + 1], outs[step + 1], out=outs[step])
        # Carry: leaving[j] = a at chunk j+1's first step * (true value there).
        if varying:
            through = a[:, :, 1:].prod(dim=2)  # (B, C, *S): a over steps 1..L-1
            first = a[:, :, 0]
        else:
            through = a ** (length - 1) if length > 1 else torch.ones_like(a)
            first = a
        leaving = torch.zeros_like(b[:, :, 0])  # (B, C, *S)
        for chunk in range(chunks - 2, -1, -1):
            nxt = chunk + 1
            head = torch.addcmul(
                outs[0][:, nxt], through[:, nxt] if varying else through, leaving[:, nxt]
            )
            torch.mul(first[:, nxt] if varying else first, head, out=leaving[:, chunk])
        # Pass 2: again from the true values leaving each chunk's end.
        torch.add(bs[-1], leaving, out=outs[-1])
        for step in range(length - 2, -1, -1):
            torch.addcmul(bs[step], coefficients[step + 1], outs[step + 1], out=outs[step])
        return out.reshape(batch, chunks * length, *state)[:, :steps]  # (B, T, *S)

    # Pass 1: each chunk from a zero state.
    outs[0].copy_(bs[0])
    for step in range(1, length):
        torch.addcmul(bs[step], coefficients[step], outs[step - 1], out=outs[step])
    # Carry: entering[j] = the true state at the end of chunk j-1.
    whole = a.prod(dim=2) if varying else a**length  # (B, C, *S) or (*S): a over a chunk
    entering = torch.empty_like(b[:, :, 0])  # (B, C, *S)
    if h0 is None:
        entering[:, 0] = 0
    else:
        entering[:, 0] = h0
    for chunk in range(1, chunks):
        previous = chunk - 1
        torch.addcmul(
            outs[-1][:, previous],
            whole[:, previous] if varying else whole,
            entering[:, previous],
            out=entering[:, chunk],
        )
    # Pass 2: again from the true entering states (chunk 0 is already right when h0 = 0).
    start = 0 if h0 is not None else 1
    if start < chunks:
        tail = slice(start, None)
        torch.addcmul(
            b[:, tail, 0],
            a[:, tail, 0] if varying else a,
            entering[:, tail],
            out=out[:, tail, 0],
        )
        for step in range(1, length):
            torch.addcmul(
                b[:, tail, step],
                a[:, tail, step] if varying else a,
                out[:, tail, step - 1],
                out=out[:, tail, step],
            )
    return out.reshape(batch, chunks * length, *state)[:, :steps]  # (B, T, *S)


def _native(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool = False
) -> torch.Tensor:
    if b.device.type != "cpu":
        raise ValueError(
            f"the native scan runs on the CPU; use method 'chunked' on {b.device.type}"
        )
    if not native.available():
        raise ValueError(
            f"the native scan kernel is not available ({native.unavailable_reason()}); "
            "use method 'sequential', which computes the same"
        )
    if not _native_takes(a, b, h0):
        # the kernel is compiled for these four dtypes, all inputs in one; addcmul promotes
        return _sequential(a, b, h0, reverse)
    return native.linear_recurrence(a, b, h0, reverse)


def _native_takes(*tensors: torch.Tensor | None) -> bool:
    """Whether the kernel takes these: all in one of the dtypes it is compiled for."""
    dtypes = {tensor.dtype for tensor in tensors if tensor is not None}
    return len(dtypes) == 1 and dtypes.pop() in _NATIVE_DTYPES


_NATIVE_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_ENGINES: dict[str, Engine] = {"sequential": _sequential, "native": _native, "chunked": _chunked}


class _LinearRecurrence(torch.autograd.Function):
    """Any engine with a hand-written backward, so autograd stores h and a, not a graph of 2T nodes.

    With G_t = dL/dh_t through every later step (PyTorch's conjugate
    convention for complex tensors):
        G_t = g_t + conj(a_{t+1}) G_{t+1}   (the same recurrence, backwards)
        dL/db_t = G_t,  dL/da_t = G_t conj(h_{t-1}),  dL/dh0 = conj(a_1) G_1.
    """

    @staticmethod
    def forward(ctx, a, b, h0, engine: Engine):
        with torch.no_grad():
            h = engine(a, b, h0)
        ctx.engine = engine
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h):
        a, h, h0 = ctx.saved_tensors
        varying = a.dim() == h.dim()
        if ctx.engine is _native and _native_takes(a, h, h0, grad_h):
            # the same formulas in one compiled pass (native/scan.cpp)
            grad_b, grad_a = native.linear_recurrence_backward(
                a, h, h0, grad_h, ctx.needs_input_grad[0]
            )
            grad_h0 = None
            if h0 is not None and ctx.needs_input_grad[2]:
                grad_h0 = grad_b[:, 0] * (a[:, 0] if varying else a).conj()
            return grad_a, grad_b, grad_h0, None
        # conj once here, not inside every step (a lazy conj is resolved per use)
        grad_b = ctx.engine(a.conj().resolve_conj(), grad_h, None, reverse=True)  # (B, T, *S): G
        grad_a = grad_h0 = None
        if ctx.needs_input_grad[0]:
            if varying:
                grad_a = torch.empty_like(grad_b)  # (B, T, *S)
                torch.mul(grad_b[:, 1:], h[:, :-1].conj(), out=grad_a[:, 1:])
                if h0 is None:
                    grad_a[:, 0] = 0
                else:
                    torch.mul(grad_b[:, 0], h0.conj(), out=grad_a[:, 0])
            else:
                # sum over batch and time of G_t conj(h_{t-1}); vecdot conjugates
                # inside its kernel (a conj view times G would copy h first).
                grad_a = torch.linalg.vecdot(h[:, :-1], grad_b[:, 1:], dim=1).sum(dim=0)  # (*S)
                if h0 is not None:
                    grad_a = grad_a + torch.linalg.vecdot(h0, grad_b[:, 0], dim=0)
        if h0 is not None and ctx.needs_input_grad[2]:
            grad_h0 = grad_b[:, 0] * (a[:, 0] if varying else a).conj()
        return grad_a, grad_b, grad_h0, None
