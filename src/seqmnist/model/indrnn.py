"""IndRNN (Li et al., CVPR 2018, "Independently Recurrent Neural Network (IndRNN):
Building A Longer and Deeper RNN").

Each unit recurs only on itself: h_t = relu(W x_t + u * h_{t-1} + b), with one
recurrent weight u per unit kept in |u| <= recurrent_max. The paper's bound for
relu over T steps is 2**(1/T): a unit may at most double what it holds over the
whole sequence, so memory lasts without exploding.

How it is computed. W x_t + b for every step is one matmul over the sequence;
the rest is elementwise but nonlinear (the relu), so no exact scan exists.
``_Recurrence`` runs it as a custom autograd Function: the forward writes each
step over the matmul's output in place (2 kernels a step), the backward carries
dL/dh back through time in place (4 kernels a step), and autograd records one
node per layer instead of three per step. Training samples/s measured on 2
shared Xeon cores, batch 128, rows input, 3 layers x 192 (82k parameters),
median of alternating steps with nn.LSTM-128 (82k) in the same process:
    28 steps:  LSTM 10,300; this Function 7,300; autograd over the plain loop 3,200
    784 steps: LSTM 24 (257 with torch.set_flush_denormal(True)); this 178; loop 2
(2 layers x 272: 8,400 and 213; see the batch-norm note below for its cost).
Tried and dropped: the same loops in TorchScript (about 7% faster at 28 steps,
but torch.jit.script is deprecated in torch 2.13 and re-specialises for every
new shape, which took a 12-example test from 1 s to 40 s); a backward built
from whole-sequence passes (mask, carry, einsum for dL/du), 2x slower at 784
steps, where each pass goes out to memory while a step's slices stay in cache.
On a CPU where they could be built, the same two loops run compiled
(native/indrnn.cpp: one call each way, split over the batch), which
``compiled_loops_take`` decides; the Python loops remain for other devices
and dtypes and are tested alike.
``indrnn_loop`` is the plain loop: the sequential reference of the tests, and
what the ONNX tracer unrolls (it records the loop, not a Python Function).

Choices beyond the equation, and why:
- The bound holds by construction: the recurrence reads u clamped to the bound,
  whose gradient still passes where it points back inside, so a unit pressed
  against the bound stays there, as under the paper's clip after each step,
  yet is never frozen, as a plain clamp's zero gradient would leave it.
- u starts uniform in (0, recurrent_max), the paper's initialisation for long
  memory (its adding problem, and every sMNIST layer but the last, which a
  layer cannot know it is); W is He-uniform for relu; b is zero.
- Residual: with ``residual`` and equal input and output widths, the layer
  returns x + branch (res-IndRNN's identity shortcut, one IndRNN per shortcut
  where the paper's block has two); a layer that changes width has none, as
  res-IndRNN's first layer, which maps the input to the width, has none.
- Batch norm, the paper's for its sMNIST networks, is optional and off by
  default: after the recurrence, over batch and time together. In training its
  statistics mix the batch and the whole sequence, so no step-by-step form
  can give the same outputs; ``step`` normalises by the running statistics and
  equals forward in eval mode, which is how inference runs. Off, stepping
  equals forward in every mode, as the core contract asks. On rows MNIST (3 x
  192, Adam 5e-3, one-cycle) it reached 96.9% after 1 epoch against 94.2%
  without, 98.8% after 10 against 98.1%, for 12% of the training speed at 28
  steps (6,400 samples/s) and 22% at 784 (138): presets that follow the paper
  turn it on.
- Under autocast the recurrence runs in float32: 784 additions in bfloat16 (8
  bits of mantissa) would lose small inputs against a large held state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.model import native
from seqmnist.model.core import Bidirectional, RecurrentCore, State
from seqmnist.model.options import IndRNNOptions


def recurrent_max_for(options: IndRNNOptions | None, steps: int) -> float:
    """The bound on |u|: the option, or the paper's 2**(1/T) for relu over ``steps`` steps."""
    if options is not None and options.recurrent_max is not None:
        return float(options.recurrent_max)
    return 2.0 ** (1.0 / max(steps, 1))


class _BoundedWeight(torch.autograd.Function):
    """u clamped to [-bound, bound], with a gradient that may pull it back inside.

    Inside the bound the gradient is the identity's. Outside it passes only
    where a descent step would move u inward (u * grad > 0), so an optimizer
    never pushes the stored u further out on the loss's behalf.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, bound: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.bound = bound
        return u.clamp(-bound, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        passes = (u.abs() <= ctx.bound) | (u * grad > 0)
        return grad * passes, None


def _forward_loop(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """h_t = relu(a_t + u * h_{t-1}) from h_{-1} = 0, written over ``a`` step by step: (T, B, H)."""
    # Every step's (B, H) view made at once: indexing them one by one costs more.
    a_steps = a.unbind(0)
    a_steps[0].relu_()
    for t in range(1, len(a_steps)):
        a_steps[t].addcmul_(u, a_steps[t - 1]).relu_()  # (B, H)
    return a


def _backward_loop(
    h: torch.Tensor, grad_h: torch.Tensor, u: torch.Tensor, tiny: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """From dL/dh (T, B, H): g = dL/dz for z_t = a_t + u h_{t-1} (T, B, H), and dL/du (H,)."""
    # The ops' out= overloads named outright: calling through the overload packet
    # (torch.ops.aten.hardshrink(...)) costs 15 us a call more to resolve.
    hardshrink_out = torch.ops.aten.hardshrink.out
    threshold_backward_out = torch.ops.aten.threshold_backward.grad_input
    g = torch.empty_like(h, memory_format=torch.contiguous_format)  # (T, B, H)
    g_steps, h_steps, grad_steps = g.unbind(0), h.unbind(0), grad_h.unbind(0)  # (B, H) each
    grad_u = torch.zeros_like(h_steps[0])  # (B, H), summed over the batch at the end
    last = len(g_steps) - 1
    for t in range(last, -1, -1):
        g_t = g_steps[t]
        if t == last:
            g_t.copy_(grad_steps[t])
        else:  # dL/dh_t = grad_h_t + u g_{t+1}
            torch.addcmul(grad_steps[t], u, g_steps[t + 1], out=g_t)
        # Over hundreds of steps g decays through u^t into subnormal floats,
        # which make the arithmetic on them, and every later matmul, 30-50x
        # slower on x86 (measured: a 784-step layer's input and weight
        # gradients took 3.3 s and 5.0 s, 93 ms and 68 ms once flushed).
        # Flushing them to zero, as a CPU in flush-to-zero mode does, changes
        # no gradient by more than the smallest normal float.
        hardshrink_out(g_t, tiny, out=g_t)
        # relu's own backward kernel: g_t where h_t > 0, else 0.
        threshold_backward_out(g_t, h_steps[t], 0.0, grad_input=g_t)
        if t > 0:
            grad_u.addcmul_(g_t, h_steps[t - 1])  # (B, H)
    return g, grad_u.sum(0)


class _Recurrence(torch.autograd.Function):
    """h_t = relu(a_t + u * h_{t-1}), h_{-1} = 0, written over ``a``.

    ``a`` is (T*B, H) or (T, B, H) with T = ``steps``, and must not be a view:
    autograd follows an in-place change to a view with extra whole-tensor copies.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, u: torch.Tensor, steps: int, compiled: bool) -> torch.Tensor:
        a_steps = a.view(steps, -1, a.shape[-1])  # (T, B, H), in a's memory
        ctx.native = compiled
        if compiled:
            native.indrnn_forward(a_steps, u)
        else:
            _forward_loop(a_steps, u)
        ctx.mark_dirty(a)
        ctx.save_for_backward(a, u)
        ctx.steps = steps
        return a

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        h, u = ctx.saved_tensors
        h_steps = h.view(ctx.steps, -1, h.shape[-1])  # (T, B, H)
        grad_steps = grad_h.reshape(h_steps.shape)  # (T, B, H), a view where it can be
        if ctx.native:
            g, grad_u = native.indrnn_backward(h_steps, grad_steps, u)
        else:
            g, grad_u = _backward_loop(h_steps, grad_steps, u, torch.finfo(h.dtype).tiny)
        return g.view(h.shape), grad_u, None, None


def compiled_loops_take(a: torch.Tensor) -> bool:
    """Whether the compiled loops (native/indrnn.cpp) run for ``a``: float32 or 64 on a CPU where
    they could be built. They compute what the Python loops do, about 2x faster (see below)."""
    return native.takes(a)  # (forward has sent tracing to indrnn_loop already)


class _BatchNormResidual(torch.autograd.Function):
    """(h, weight, bias, residual or None, eps) -> (BN(h) + residual, batch mean, biased
    variance), batch norm in training mode over h's rows (native/norm.cpp)."""

    @staticmethod
    def forward(ctx, h, weight, bias, residual, eps: float):
        y, mean, invstd, variance = native.batch_norm_forward(h, weight, bias, residual, eps)
        ctx.save_for_backward(h, weight, mean, invstd)
        ctx.has_residual = residual is not None
        ctx.mark_non_differentiable(mean, variance)
        return y, mean, variance

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad, _mean, _variance):
        h, weight, mean, invstd = ctx.saved_tensors
        grad_h, grad_weight, grad_bias = native.batch_norm_backward(grad, h, weight, mean, invstd)
        return grad_h, grad_weight, grad_bias, grad if ctx.has_residual else None, None


def compiled_norm_takes(h: torch.Tensor, norm: nn.BatchNorm1d) -> bool:
    """Whether a layer's batch norm (and residual) runs compiled (native/norm.cpp): in
    training, with affine weights in h's dtype, over more than one row (torch raises
    for one), where native.takes(h). torch's CPU batch norm took 0.2 ms forward and
    0.5 ms backward on an IndRNN layer's (3,584, 112) by rows, a fifth of the row
    preset's step over its six layers."""
    return (
        norm.training
        and norm.affine
        and h.shape[0] > 1
        and h.dtype == norm.weight.dtype
        and native.takes(h)
    )


def batch_norm_residual(
    norm: nn.BatchNorm1d, h: torch.Tensor, residual: torch.Tensor | None
) -> torch.Tensor:
    """norm(h) + residual (or norm(h)) for h (N, C): the compiled pass where
    compiled_norm_takes, updating the running statistics as nn.BatchNorm1d does."""
    compiled = compiled_norm_takes(h, norm) and (
        residual is None or (residual.dtype == h.dtype and residual.shape == h.shape)
    )  # the kernel neither promotes nor broadcasts the residual
    if not compiled:
        y = norm(h)
        return y if residual is None else y + residual
    # nn.BatchNorm1d's exponential_average_factor, as its forward computes it
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # the cumulative average
            factor = 1.0 / float(norm.num_batches_tracked)
    y, mean, variance = _BatchNormResidual.apply(h, norm.weight, norm.bias, residual, norm.eps)
    if norm.track_running_stats and norm.running_mean is not None:
        rows = h.shape[0]
        with torch.no_grad():  # the unbiased variance, as torch keeps it
            norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), factor)
            unbiased = variance * (rows / (rows - 1))
            norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), factor)
    return y


def indrnn_recurrence(
    a: torch.Tensor, u: torch.Tensor, compiled: bool | None = None
) -> torch.Tensor:
    """The fast path: h_t = relu(a_t + u * h_{t-1}) from h_{-1} = 0; a (T, B, H) -> h (T, B, H).

    ``compiled`` picks the compiled loops or the Python ones; None: compiled where they run.
    """
    if compiled is None:
        compiled = compiled_loops_take(a)
    # A contiguous copy: the loops write over it, and the compiled ones need the layout.
    a = a.clone(memory_format=torch.contiguous_format)
    return _Recurrence.apply(a, u.to(a.dtype), a.shape[0], compiled)


def indrnn_loop(a: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The same recurrence as a plain loop of differentiable ops: (T, B, H) -> (T, B, H)."""
    h = torch.relu(a[0])  # (B, H): h_{-1} = 0 needs no zeros of a traced batch size
    outputs = [h]
    for t in range(1, a.shape[0]):
        h = torch.relu(a[t] + u * h)  # (B, H)
        outputs.append(h)
    return torch.stack(outputs)  # (T, B, H)


class IndRNN(RecurrentCore):
    """One IndRNN layer: x -> h (BN(h) with ``batch_norm``), plus x with the shortcut."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        recurrent_max: float,
        residual: bool,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = hidden_size
        self.recurrent_max = recurrent_max
        self.residual = residual and input_size == hidden_size
        self.W = nn.Parameter(torch.empty(hidden_size, input_size))  # input weights
        self.u = nn.Parameter(torch.empty(hidden_size))  # recurrent weights, one per unit
        self.b = nn.Parameter(torch.zeros(hidden_size))
        # The paper's batch norm after each layer, over batch and time together.
        self.norm = nn.BatchNorm1d(hidden_size) if batch_norm else None
        nn.init.kaiming_uniform_(self.W, nonlinearity="relu")
        nn.init.uniform_(self.u, 0.0, recurrent_max)

    def recurrent_weight(self) -> torch.Tensor:
        """u as the recurrence reads it: within [-recurrent_max, recurrent_max]."""
        return _BoundedWeight.apply(self.u, self.recurrent_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        batch, steps, _ = x.shape
        x_steps = x.transpose(0, 1).reshape(steps * batch, self.input_size)  # (T*B, F)
        a = F.linear(x_steps, self.W, self.b)  # (T*B, H), time-major for the loop
        a = a.to(torch.promote_types(a.dtype, torch.float32))
        u = self.recurrent_weight()
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            h = indrnn_loop(a.view(steps, batch, -1), u.to(a.dtype))  # (T, B, H)
        else:
            # Written over a, which nothing else reads: a fresh (T, B, H) output
            # costs a page fault for every 4 KiB at 784 steps.
            compiled = compiled_loops_take(a)
            h = _Recurrence.apply(a, u.to(a.dtype), steps, compiled).view(steps, batch, -1)
        if self.norm is not None:  # the norm and the shortcut in one pass, over (T*B, H)
            residual = x.transpose(0, 1).reshape(steps * batch, -1) if self.residual else None
            h = batch_norm_residual(self.norm, h.reshape(-1, self.output_size), residual)
            return h.view(steps, batch, -1).transpose(0, 1)  # (B, T, H), time-major in memory
        h = h.transpose(0, 1)  # (B, T, H), still time-major in memory for the next layer
        return x + h if self.residual else h

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        dtype = torch.promote_types(reference.dtype, torch.float32)
        return reference.new_zeros(batch_size, self.output_size, dtype=dtype)  # (B, H)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step; with batch norm it normalises by the running statistics (forward in eval)."""
        a = F.linear(x, self.W, self.b)  # (B, H)
        a = a.to(torch.promote_types(a.dtype, torch.float32))
        h = torch.relu(a + self.recurrent_weight().to(a.dtype) * state)  # (B, H)
        y = h if self.norm is None else self._normalise_by_running_statistics(h)
        return (x + y if self.residual else y), h

    def _normalise_by_running_statistics(self, h: torch.Tensor) -> torch.Tensor:
        # What BatchNorm1d computes in eval, written out: F.batch_norm took 8 ms
        # a call here on a (4, 5) step, whatever its size.
        norm = self.norm
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)  # (H,)
        return torch.addcmul(norm.bias, h - norm.running_mean, scale)  # (B, H)


class ResidualBidirectional(Bidirectional):
    """Both directions of IndRNN, plus the shortcut x + [ahead, behind] when the widths match."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, 2H)
        return x + super().forward(x)


def build(spec) -> RecurrentCore:
    """One IndRNN layer from a ``LayerSpec`` whose options are ``IndRNNOptions`` (or None)."""
    options = spec.options if spec.options is not None else IndRNNOptions()
    bound = recurrent_max_for(options, spec.steps)
    if not spec.bidirectional:
        return IndRNN(
            spec.input_size, spec.hidden_size, bound, options.residual, options.batch_norm
        )
    # Each direction sees the whole input but yields half the width, so the
    # shortcut, if any, belongs around the pair.
    ahead = IndRNN(spec.input_size, spec.hidden_size, bound, False, options.batch_norm)
    behind = IndRNN(spec.input_size, spec.hidden_size, bound, False, options.batch_norm)
    if options.residual and spec.input_size == 2 * spec.hidden_size:
        return ResidualBidirectional(ahead, behind)
    return Bidirectional(ahead, behind)


__all__ = [
    "IndRNN",
    "ResidualBidirectional",
    "build",
    "indrnn_loop",
    "indrnn_recurrence",
    "recurrent_max_for",
]
