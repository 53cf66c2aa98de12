"""A layer's last elementwise steps in one compiled pass each way (native/activations.cpp).

torch computes gelu(linear(x)) as addmm, which first copies the broadcast
bias into its output, then a GELU pass reading that output and writing its
own; residual + glu(linear(x)), LRU's block output, takes a third pass for
the sum, and LRU's readout gelu(Re(C x) + D u) three (the product by D, the
sum, the GELU). Here the product is taken without the bias, and one pass adds
it and applies the rest, forward and backward. Elsewhere (no compiled
kernels, autocast, tracing) these are the torch operations.

Measured on the 2-core Xeon, training steps alternating in one process:
minGRU by pixels 609 to 566 ms (its MLP and its gates' bias, native/gates.cpp;
by rows no change); LRU by pixels 470 to 398 ms and by rows 22.8 to 20.4 ms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.model import native


def bias_gradient(grad: torch.Tensor, needed: bool) -> torch.Tensor | None:
    """dL/dbias of a bias added to every row: dL/d(x + bias) summed over the rows."""
    return grad.reshape(-1, grad.shape[-1]).sum(0) if needed else None


class _BiasGELU(torch.autograd.Function):
    """(x, bias) -> gelu(x + bias), the bias broadcast over x's last dimension."""

    @staticmethod
    def forward(ctx, x, bias):
        ctx.save_for_backward(x, bias)
        return native.bias_gelu_forward(x, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        grad_x = native.bias_gelu_backward(grad, x, bias)
        return grad_x, bias_gradient(grad_x, ctx.needs_input_grad[1])


class _BiasGLUResidual(torch.autograd.Function):
    """(x = [value, gate], bias, residual) -> residual + (value + bias_v) sigmoid(gate + bias_g)."""

    @staticmethod
    def forward(ctx, x, bias, residual):
        ctx.save_for_backward(x, bias)
        return native.bias_glu_residual_forward(x, bias, residual)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, bias = ctx.saved_tensors
        grad_x = native.bias_glu_backward(grad, x, bias)
        return grad_x, bias_gradient(grad_x, ctx.needs_input_grad[1]), grad


class _SkipGELU(torch.autograd.Function):
    """(x, d, u) -> gelu(x + d * u), d broadcast over x's last dimension."""

    @staticmethod
    def forward(ctx, x, d, u):
        ctx.save_for_backward(x, d, u)
        return native.skip_gelu_forward(x, d, u)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        grad_x, grad_u, grad_d = native.skip_gelu_backward(grad, *ctx.saved_tensors)
        return grad_x, grad_d, grad_u


def compiled_pass_takes(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Whether a Linear's output and activation run as the compiled pass: native.takes(x),
    a bias, x in the layer's dtype and no autocast (whose products would be bf16, which
    the kernels lack)."""
    return (
        linear.bias is not None
        and x.dtype == linear.weight.dtype
        and not torch.is_autocast_enabled(x.device.type)
        and native.takes(x)
    )


def linear_gelu(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """gelu(linear(x)) (exact GELU, torch's default)."""
    if compiled_pass_takes(x, linear):
        return _BiasGELU.apply(F.linear(x, linear.weight), linear.bias)
    return F.gelu(linear(x))


def linear_glu_residual(linear: nn.Linear, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + glu(linear(x)), the GLU's value the first half of the Linear's outputs."""
    if (
        compiled_pass_takes(x, linear)
        and residual.dtype == x.dtype
        and residual.shape == (*x.shape[:-1], linear.out_features // 2)
    ):  # the kernel neither promotes nor broadcasts the residual
        return _BiasGLUResidual.apply(F.linear(x, linear.weight), linear.bias, residual)
    return residual + F.glu(linear(x), dim=-1)


class GELUMLP(nn.Sequential):
    """Linear(width, hidden) -> GELU -> Linear(hidden, width), an nn.Sequential (so its
    parameters keep their names, 0.* and 2.*) whose first Linear and GELU run as
    ``linear_gelu``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, _, last = self
        return last(linear_gelu(first, x))


def gelu_of_scaled_sum(x: torch.Tensor, d: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """gelu(x + d * u), d one value per column: LRU's readout Re(C x) + D u and its GELU,
    one compiled pass where three torch ones would run (x and u in d's dtype, no autocast)."""
    if (
        x.dtype == d.dtype == u.dtype
        and x.shape == u.shape  # the kernel does not broadcast
        and d.shape == x.shape[-1:]
        and not torch.is_autocast_enabled(x.device.type)
        and native.takes(x)
    ):
        return _SkipGELU.apply(x, d, u)
    return F.gelu(x + d * u)
