"""LEM (Rusch, Mishra, Erichson and Mahoney, ICLR 2022, "Long Expressive Memory for Sequence Modeling").

A multiscale ODE discretised with learned, input-dependent time steps (eq. 3 of
the paper; tk-rusch/LEM's LEMCell):

    dt_n     = dt * sigmoid(W1 y_{n-1} + V1 u_n + b1)        z's time steps
    dt_bar_n = dt * sigmoid(W2 y_{n-1} + V2 u_n + b2)        y's time steps
    z_n = (1 - dt_n) z_{n-1} + dt_n tanh(W_z y_{n-1} + V_z u_n + b_z)
    y_n = (1 - dt_bar_n) y_{n-1} + dt_bar_n tanh(W_y z_n + V_y u_n + b_y)

The output is y. With dt <= 1 both updates are convex combinations of the old
state and a tanh, so |y|, |z| < 1 whatever the input. ``step`` is the formula as
written: the sequential reference. ``forward`` computes the same numbers faster
(see ``remember``); tests hold the two equal in values and gradients.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from seqmnist.model import native
from seqmnist.model.core import (
    Bidirectional,
    RecurrentCore,
    State,
    run_stepwise,
    time_major_drive,
)

# The paper's four maps of the input and hidden state, in the order the fast
# path stacks them: z's time step, y's time step, z's target, y's target.
_GATES = ("1", "2", "_z", "_y")


class LEM(RecurrentCore):
    """One LEM layer: ``hidden_size`` units, each with a slow-fast pair (y, z); output y."""

    def __init__(self, input_size: int, hidden_size: int, dt: float) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.dt = dt
        for gate in _GATES:  # W1, V1, b1, ..., W_y, V_y, b_y
            self.register_parameter(f"W{gate}", nn.Parameter(torch.empty(hidden_size, hidden_size)))
            self.register_parameter(f"V{gate}", nn.Parameter(torch.empty(hidden_size, input_size)))
            self.register_parameter(f"b{gate}", nn.Parameter(torch.empty(hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # tk-rusch/LEM draws every weight and bias from U(-1/sqrt(H), 1/sqrt(H)).
        # Its cell adds two biases in each map (the input's and the hidden's
        # nn.Linear); b here is their sum, so it is drawn as a sum of two draws.
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for gate in _GATES:
                getattr(self, f"W{gate}").uniform_(-bound, bound)
                getattr(self, f"V{gate}").uniform_(-bound, bound)
                bias = getattr(self, f"b{gate}")
                bias.uniform_(-bound, bound).add_(torch.empty_like(bias).uniform_(-bound, bound))

    def _stacked(self, kind: str, gates: tuple[str, ...] = _GATES) -> torch.Tensor:
        return torch.cat([getattr(self, f"{kind}{gate}") for gate in gates])  # (len(gates)*H, ...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        if torch.jit.is_tracing():  # ONNX export: the plain steps trace to plain ops
            return run_stepwise(self, x)
        hidden_weight = self._stacked("W", _GATES[:3])  # (3H, H): [W1; W2; W_z], act on y
        # Autocast may run the input projection in bf16; the recurrence runs in
        # the weights' dtype, so a bf16 state cannot drift over 784 steps.
        drive = time_major_drive(x, self._stacked("V"), self._stacked("b"))  # (T, B, 4H)
        with torch.autocast(x.device.type, enabled=False):
            y = remember(drive.to(hidden_weight.dtype), hidden_weight, self.W_y, self.dt)
        return y.transpose(0, 1)  # (T, B, H) -> (B, T, H)

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        zeros = reference.new_zeros(batch_size, self.hidden_size)  # (B, H)
        return (zeros, zeros.clone())  # y, z

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, z = state  # (B, H) each
        dt_n = self.dt * torch.sigmoid(F.linear(y, self.W1) + F.linear(x, self.V1, self.b1))
        dt_bar_n = self.dt * torch.sigmoid(F.linear(y, self.W2) + F.linear(x, self.V2, self.b2))
        z = (1 - dt_n) * z + dt_n * torch.tanh(
            F.linear(y, self.W_z) + F.linear(x, self.V_z, self.b_z)
        )
        y = (1 - dt_bar_n) * y + dt_bar_n * torch.tanh(
            F.linear(z, self.W_y) + F.linear(x, self.V_y, self.b_y)
        )
        return y, (y, z)


def compiled_loop_takes(drive: torch.Tensor) -> bool:
    """Whether the compiled loop (native/lem.cpp) runs for ``drive`` (native.takes; tests
    switch it). It computes what _run and _Memory.backward do, with each step's
    elementwise work in two fused passes instead of a dozen torch operations
    (measured in remember's docstring)."""
    return native.takes(drive)


def remember(
    drive: torch.Tensor, hidden_weight: torch.Tensor, W_y: torch.Tensor, dt: float,
    compiled: bool | None = None,
):  # fmt: skip
    """y_1..y_T from zero states, given ``drive`` = V u_t + b (T, B, 4H), [W1; W2; W_z] and W_y.

    The recurrence is nonlinear, so there is no exact parallel-in-time form. The
    cheapest exact one measured is this loop: the input projection done for
    all steps at once by the caller, per step two matmuls and a few fused
    elementwise ops, and a hand-written backward. Training samples/s, batch
    128, LEM-128 (80k parameters), side by side with nn.LSTM-128 in one process
    on 1 thread of the 2-core Xeon (2 threads were swamped by other jobs on the
    machine): 28 steps 0.71x of LSTM, where the same loop as autograd ops
    reaches 0.56x; 784 steps 0.66x, autograd ops 0.58x. The LSTM's step is one
    oneDNN kernel; this one is about fifteen small ops, and the backward reads
    six saved values per unit and step. (torch.compile was measured for
    coRNN's loop, where it lost to the hand-written backward; see cornn.py.)

    ``compiled`` (None: compiled_loop_takes) runs the same loop as one call each
    way (native/lem.cpp): a step is its two matmuls and two fused elementwise
    passes. Training step of the same LEM-128, batch 128, on 2 threads of the
    Xeon, the two loops alternating in one process: 26.8 to 17.8 ms at 28 steps,
    760 to 448 ms at 784.
    """
    if compiled is None:
        compiled = compiled_loop_takes(drive)
    if torch.is_grad_enabled() and (
        drive.requires_grad or hidden_weight.requires_grad or W_y.requires_grad
    ):
        return _Memory.apply(drive, hidden_weight, W_y, dt, compiled)
    if compiled:  # y alone, two states kept instead of every step's
        return native.lem_forward(drive, hidden_weight, W_y, dt, False)[0]
    states, _ = _run(drive, hidden_weight, W_y, dt, for_backward=False)
    return states[1:, :, 1]  # (T, B, H)


def _run(drive, hidden_weight, W_y, dt, for_backward, compiled=False):
    """The forward loop, shared by training and inference (``compiled``: native/lem.cpp's).

    Returns the states [z_t, y_t], t = 0..T, as (T+1, B, 2, H) and, ``for_backward``,
    each step's derivatives (T, B, 6, H), laid out for _Memory.backward as

        [K1, K2, Kz, Ky, keep_z, keep_y]

    K1, K2: d z_t, d y_t / d (pre-activations of dt_n, dt_bar_n); Kz, Ky: d z_t, d y_t /
    d (pre-activations of their tanh targets); keep = 1 - dt_n (1 - dt_bar_n): d new / d old.
    They are computed while each step's values are in cache: built afterwards
    from saved gates, as passes over whole (T, B, H) arrays (memory-bound on a
    CPU), they held training at 0.59x of nn.LSTM instead of 0.71x.
    """
    if compiled:  # (inference calls the kernel itself, for y alone)
        return native.lem_forward(drive, hidden_weight, W_y, dt, True)
    steps, batch, hidden = drive.shape[0], drive.shape[1], W_y.shape[0]
    states = drive.new_empty(steps + 1, batch, 2, hidden)  # [z_t, y_t]
    states[0] = 0.0
    derivatives = drive.new_empty(steps, batch, 6, hidden) if for_backward else None
    gates = drive.new_empty(batch, 4, hidden)  # this step's [dt_n, dt_bar_n, tanh_z, tanh_y]
    # Every view the loop touches, made once (indexing costs show at 28 steps).
    on_y, on_z = gates[:, :3].view(batch, 3 * hidden), gates[:, 3]  # matmul outputs
    time_steps, targets = gates[:, :2], gates[:, 2:]  # (B, 2, H) each
    dt_n, dt_bar_n, target_z, target_y = gates.unbind(1)  # (B, H) each
    # (B, 3H) each: [V1 u + b1, V2 u + b2, V_z u + b_z], and (B, H): V_y u + b_y
    drive_on_y, drive_on_z = (
        drive[:, :, : 3 * hidden].unbind(0),
        drive[:, :, 3 * hidden :].unbind(0),
    )
    old, new = states[:-1].unbind(0), states[1:].unbind(0)  # (B, 2, H) each
    z_old, y_old = states[:-1, :, 0].unbind(0), states[:-1, :, 1].unbind(0)  # (B, H) each
    z_new, y_new = states[1:, :, 0].unbind(0), states[1:, :, 1].unbind(0)
    if for_backward:
        wrt_rate = derivatives[:, :, 0:2].unbind(0)
        wrt_target = derivatives[:, :, 2:4].unbind(0)
        wrt_old = derivatives[:, :, 4:6].unbind(0)
    hidden_weight_t, W_y_t = hidden_weight.t(), W_y.t()
    for t in range(steps):
        torch.addmm(drive_on_y[t], y_old[t], hidden_weight_t, out=on_y)
        time_steps.sigmoid_()
        if dt != 1.0:
            time_steps.mul_(dt)
        # lerp(old, target, w) = old + w (target - old): each update is one op.
        torch.lerp(z_old[t], target_z.tanh_(), dt_n, out=z_new[t])
        torch.addmm(drive_on_z[t], z_new[t], W_y_t, out=on_z)
        torch.lerp(y_old[t], target_y.tanh_(), dt_bar_n, out=y_new[t])
        if for_backward:
            # wrt the time step's pre-activation a: dt sigmoid'(a) (target - old),
            # which is (1 - sigmoid(a)) (new - old)
            change = new[t] - old[t]  # (B, 2, H)
            torch.addcmul(change, change, time_steps, value=-1.0 / dt, out=wrt_rate[t])
            # wrt the target's pre-activation b: step tanh'(b) = step - step target^2
            torch.addcmul(time_steps, time_steps * targets, targets, value=-1.0, out=wrt_target[t])
            torch.sub(1.0, time_steps, out=wrt_old[t])
    return states, derivatives


class _Memory(torch.autograd.Function):
    @staticmethod
    def forward(ctx, drive, hidden_weight, W_y, dt, compiled):  # drive (T, B, 4H)
        states, derivatives = _run(drive, hidden_weight, W_y, dt, True, compiled)
        ctx.save_for_backward(states, derivatives, hidden_weight, W_y)
        ctx.compiled = compiled
        # (T, B, H), a view of the saved states: changing it in place is an error
        return states[1:, :, 1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys):  # (T, B, H)
        states, derivatives, hidden_weight, W_y = ctx.saved_tensors
        steps, batch, _, hidden = derivatives.shape
        if ctx.compiled:
            grads = native.lem_backward(grad_ys, derivatives, hidden_weight, W_y)
        else:
            grads = _backward_loop(grad_ys, derivatives, hidden_weight, W_y)
        flat = grads.view(steps * batch, 6 * hidden)
        with torch.autocast(derivatives.device.type, enabled=False):
            # The weight gradients, summed over steps as one matmul each.
            y_before = states[:-1, :, 1].reshape(steps * batch, hidden)  # y_{t-1}
            z_after = states[1:, :, 0].reshape(steps * batch, hidden)  # z_t
            grad_hidden_weight = flat[:, : 3 * hidden].t() @ y_before  # (3H, H)
            grad_W_y = flat[:, 3 * hidden : 4 * hidden].t() @ z_after  # (H, H)
        grad_drive = grads[:, :, :4].reshape(steps, batch, 4 * hidden)  # a view
        return grad_drive, grad_hidden_weight, grad_W_y, None, None


def _backward_loop(grad_ys, derivatives, hidden_weight, W_y):
    """The per-step gradients [d1, d2, d_z, d_y, carry_z, carry_y] (T, B, 6, H), from the
    last step back: the first four are the gradient wrt the drive; the carries are
    dL/dz_{t-1}, dL/dy_{t-1} through the (1 - dt) terms. Each half is one product
    with its derivatives."""
    steps, batch, _, hidden = derivatives.shape
    grads = derivatives.new_empty(steps, batch, 6, hidden)
    grad_y = derivatives.new_zeros(batch, hidden)  # dL/dy_t from the steps after t
    carry_z = derivatives.new_zeros(batch, hidden)  # dL/dz_t from the steps after t
    z_side, y_side = derivatives[:, :, 0::2].unbind(0), derivatives[:, :, 1::2].unbind(0)
    to_z, to_y = grads[:, :, 0::2].unbind(0), grads[:, :, 1::2].unbind(0)  # (B, 3, H) each
    from_y = grads[:, :, :3].view(steps, batch, 3 * hidden).unbind(0)  # [d1, d2, d_z]
    d_y, carry_zs, carry_ys = (grads[:, :, slot].unbind(0) for slot in (3, 4, 5))
    with torch.autocast(derivatives.device.type, enabled=False):
        for t in reversed(range(steps)):
            grad_y = grad_y + grad_ys[t]  # dL/dy_t, all of it
            torch.mul(y_side[t], grad_y.unsqueeze(1), out=to_y[t])  # d2, d_y, carry_y
            grad_z = torch.addmm(carry_z, d_y[t], W_y)  # dL/dz_t, all of it
            torch.mul(z_side[t], grad_z.unsqueeze(1), out=to_z[t])  # d1, d_z, carry_z
            carry_z = carry_zs[t]
            grad_y = torch.addmm(carry_ys[t], from_y[t], hidden_weight)  # dL/dy_{t-1}
    return grads


def build(spec) -> RecurrentCore:
    """One LEM layer from a LayerSpec whose options are a LEMOptions."""

    def one() -> LEM:
        return LEM(spec.input_size, spec.hidden_size, spec.options.dt)

    return Bidirectional(one(), one()) if spec.bidirectional else one()
