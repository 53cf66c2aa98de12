"""coRNN (Rusch and Mishra, ICLR 2021, "Coupled Oscillatory Recurrent Neural Network").

A network of damped, driven, coupled oscillators, y'' = tanh(W y + W_z y' + V u + b)
- gamma y - epsilon y', discretised as in the paper's eq. (3) and tk-rusch/coRNN
(IMEX: z explicit in the old state, y implicit in the new z):

    z_n = z_{n-1} + dt * (tanh(W y_{n-1} + W_z z_{n-1} + V u_n + b) - gamma y_{n-1} - epsilon z_{n-1})
    y_n = y_{n-1} + dt * z_n

The output is y. ``step`` is that formula as written: the sequential reference.
``forward`` computes the same numbers faster (see ``oscillate``); tests hold
the two equal in values and gradients.
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


class CoRNN(RecurrentCore):
    """One layer of coupled oscillators; ``hidden_size`` oscillators, output y (their positions)."""

    def __init__(
        self, input_size: int, hidden_size: int, dt: float, gamma: float, epsilon: float
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.dt = dt
        self.gamma = gamma
        self.epsilon = epsilon
        self.W = nn.Parameter(torch.empty(hidden_size, hidden_size))  # acts on positions y
        self.W_z = nn.Parameter(torch.empty(hidden_size, hidden_size))  # on velocities z (script W)
        self.V = nn.Parameter(torch.empty(hidden_size, input_size))  # on inputs u
        self.b = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # tk-rusch/coRNN keeps [V, W_z, W] and b in one nn.Linear over cat(u, z, y):
        # PyTorch's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with that fan-in.
        bound = 1.0 / math.sqrt(self.input_size + 2 * self.hidden_size)
        for parameter in (self.W, self.W_z, self.V, self.b):
            nn.init.uniform_(parameter, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        if torch.jit.is_tracing():  # ONNX export: the plain steps trace to plain ops
            return run_stepwise(self, x)
        weight = torch.cat((self.W, self.W_z), dim=1)  # (H, 2H), acts on [y, z]
        # Autocast may run the input projection in bf16; the oscillator itself runs
        # in the weights' dtype: each step moves y by dt * z, about bf16's
        # resolution of y (8 significant bits), so a bf16 state would round it away.
        drive = time_major_drive(x, self.V, self.b).to(weight.dtype)  # (T, B, H)
        with torch.autocast(x.device.type, enabled=False):
            positions = oscillate(drive, weight, self.dt, self.gamma, self.epsilon)  # (T, B, H)
        return positions.transpose(0, 1)  # (B, T, H)

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        zeros = reference.new_zeros(batch_size, self.hidden_size)  # (B, H)
        return (zeros, zeros.clone())  # positions y, velocities z

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        y, z = state  # (B, H) each
        force = torch.tanh(
            F.linear(y, self.W) + F.linear(z, self.W_z) + F.linear(x, self.V, self.b)
        )
        z = z + self.dt * (force - self.gamma * y - self.epsilon * z)
        y = y + self.dt * z
        return y, (y, z)


def compiled_loop_takes(drive: torch.Tensor) -> bool:
    """Whether the compiled loop (native/cornn.cpp) runs for ``drive`` (native.takes; tests
    switch it). It computes what _run and _Oscillator.backward do, with each step's
    elementwise work in one fused pass (measured in oscillate's docstring)."""
    return native.takes(drive)


def oscillate(
    drive: torch.Tensor, weight: torch.Tensor, dt: float, gamma: float, epsilon: float,
    compiled: bool | None = None,
):  # fmt: skip
    """Positions y_1..y_T from rest, given ``drive`` = V u_t + b (T, B, H) and [W, W_z] (H, 2H).

    The recurrence is nonlinear, so there is no exact parallel-in-time form. The
    cheapest exact one measured is this loop: the input projection done for
    all steps at once by the caller, then per step one matmul and five fused
    elementwise ops, and a hand-written backward (one matmul per step, the
    weight gradient as one matmul over all steps). Training samples/s, batch
    128, 193 oscillators (80k parameters), side by side with nn.LSTM-128 in one
    process on 1 thread of the 2-core Xeon (2 threads were swamped by other
    jobs on the machine): 28 steps 0.90x of LSTM, where the same loop as
    autograd ops reaches 0.72x and torch.compile of it 0.81x after a 110 s
    compile; 784 steps 1.14x of LSTM, autograd ops 0.80x. No time is lost to
    the loop itself: per step it runs the same FLOPs as the LSTM's.

    ``compiled`` (None: compiled_loop_takes) runs the same loop as one call each
    way (native/cornn.cpp): a step is its matmul and one fused elementwise pass.
    Training step of the row-cornn model (128+128 oscillators), batch 128, on 2
    threads of the Xeon, the two loops alternating in one process: 23.3 to 17.7
    ms at 28 steps, 453 to 320 ms at 784.
    """
    if compiled is None:
        compiled = compiled_loop_takes(drive)
    if torch.is_grad_enabled() and (drive.requires_grad or weight.requires_grad):
        return _Oscillator.apply(drive, weight, dt, gamma, epsilon, compiled)
    if compiled:  # the positions alone, two states kept instead of every step's
        return native.cornn_forward(drive, weight, dt, gamma, epsilon, False)[0]
    states, _ = _run(drive, weight, dt, gamma, epsilon, False)
    return states[1:, :, : weight.shape[0]]  # (T, B, H)


def _run(drive, weight, dt, gamma, epsilon, for_backward, compiled=False):
    """The forward loop, shared by training and inference (``compiled``: native/cornn.cpp's).

    Returns the states [y_t, z_t], t = 0..T, as (T+1, B, 2H) and, ``for_backward``,
    each step's dt * tanh'(pre-activation) (T, B, H), computed while the step's
    force is in cache (a pass over the whole (T, B, H) array afterwards is
    memory-bound on a CPU).
    """
    if compiled:  # (inference calls the kernel itself, for the positions alone)
        return native.cornn_forward(drive, weight, dt, gamma, epsilon, True)
    steps, batch, hidden = drive.shape
    states = drive.new_empty(steps + 1, batch, 2 * hidden)  # [y_t, z_t]
    states[0] = 0.0
    force = drive.new_empty(batch, hidden)  # this step's tanh(W y + W_z z + V u + b)
    slopes = drive.new_empty(steps, batch, hidden) if for_backward else None
    dt_tensor = drive.new_tensor(dt)  # addcmul takes its constant term as a tensor
    # Every view the loop touches, made once (indexing costs show at 28 steps).
    old = states[:-1].unbind(0)  # (B, 2H) each: the matmul's input
    y_old, z_old = states[:-1, :, :hidden].unbind(0), states[:-1, :, hidden:].unbind(0)
    y_new, z_new = states[1:, :, :hidden].unbind(0), states[1:, :, hidden:].unbind(0)
    drives, weight_t = drive.unbind(0), weight.t()  # weight_t (2H, H)
    for t in range(steps):
        torch.addmm(drives[t], old[t], weight_t, out=force).tanh_()
        # z_t = z + dt (force - gamma y - epsilon z), y_t = y + dt z_t
        torch.mul(z_old[t], 1.0 - dt * epsilon, out=z_new[t]).add_(y_old[t], alpha=-dt * gamma)
        z_new[t].add_(force, alpha=dt)
        torch.add(y_old[t], z_new[t], alpha=dt, out=y_new[t])
        if for_backward:
            torch.addcmul(dt_tensor, force, force, value=-dt, out=slopes[t])  # dt (1 - force^2)
    return states, slopes


class _Oscillator(torch.autograd.Function):
    @staticmethod
    def forward(ctx, drive, weight, dt, gamma, epsilon, compiled):
        # drive (T, B, H), weight (H, 2H)
        states, slopes = _run(drive, weight, dt, gamma, epsilon, True, compiled)
        ctx.save_for_backward(states, slopes, weight)
        ctx.constants = (dt, gamma, epsilon)
        ctx.compiled = compiled
        # (T, B, H), a view of the saved states: changing it in place is an error
        return states[1:, :, : weight.shape[0]]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_positions):  # (T, B, H)
        states, slopes, weight = ctx.saved_tensors
        dt, gamma, epsilon = ctx.constants
        steps, batch, hidden = slopes.shape
        if ctx.compiled:
            grad_drive = native.cornn_backward(grad_positions, slopes, weight, dt, gamma, epsilon)
        else:
            grad_drive = _backward_loop(grad_positions, slopes, weight, dt, gamma, epsilon)
        with torch.autocast(slopes.device.type, enabled=False):
            # dL/d[W, W_z] (H, 2H): the sum over steps as one matmul
            before = states[:-1].view(steps * batch, 2 * hidden)  # [y_{t-1}, z_{t-1}]
            grad_weight = grad_drive.view(steps * batch, hidden).t() @ before
        return grad_drive, grad_weight, None, None, None, None


def _backward_loop(grad_positions, slopes, weight, dt, gamma, epsilon):
    """dL/d drive (T, B, H), from the last step back."""
    steps, batch, hidden = slopes.shape
    grad_drive = torch.empty_like(slopes)  # (T, B, H)
    grad_state = slopes.new_zeros(batch, 2 * hidden)  # dL/d[y_t, z_t] from the steps after t
    base = torch.empty_like(grad_state)  # the same through the linear terms of step t
    base_y, base_z = base[:, :hidden], base[:, hidden:]
    grad_drives = grad_drive.unbind(0)
    with torch.autocast(slopes.device.type, enabled=False):
        for t in reversed(range(steps)):
            grad_y = grad_state[:, :hidden] + grad_positions[t]  # dL/dy_t
            # y_t = y_{t-1} + dt z_t: z_t reaches the loss through y_t too.
            grad_z = grad_state[:, hidden:].add(grad_y, alpha=dt)  # dL/dz_t
            torch.mul(grad_z, slopes[t], out=grad_drives[t])  # dL/d pre-activation
            torch.add(grad_y, grad_z, alpha=-dt * gamma, out=base_y)
            torch.mul(grad_z, 1.0 - dt * epsilon, out=base_z)
            grad_state = torch.addmm(base, grad_drives[t], weight)  # dL/d[y_{t-1}, z_{t-1}]
    return grad_drive


def build(spec) -> RecurrentCore:
    """One coRNN layer from a LayerSpec whose options are a CoRNNOptions."""

    def one() -> CoRNN:
        options = spec.options
        return CoRNN(spec.input_size, spec.hidden_size, options.dt, options.gamma, options.epsilon)

    return Bidirectional(one(), one()) if spec.bidirectional else one()
