"""LRU: the Linear Recurrent Unit of Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences".

The recurrence is linear and diagonal over a complex state, so training
computes it as a scan (model/scan.py) and inference steps it:

    x_k = diag(lambda) x_{k-1} + gamma * B u_k,    y_k = Re(C x_k) + D * u_k,
    lambda = exp(-exp(nu_log) + i exp(theta_log)),  gamma = exp(gamma_log),

with the eigenvalues drawn uniformly on a ring r_min <= |lambda| <= r_max,
phases in [0, max_phase], and gamma_log = log sqrt(1 - |lambda|^2) at init
so the state's scale does not grow as |lambda| nears 1 (the paper's
appendix A, with its names).

One layer of a seqmnist stack is the paper's block, pre-norm and residual:
    u = encoder(x) (a linear map, only when input_size != hidden_size: the
        paper's encoder, so the residual always has matching widths),
    out = u + GLU(GELU(LRU(LayerNorm(u)))).
LayerNorm rather than BatchNorm so the block is the same in training and
inference and can be stepped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.model.core import Bidirectional, RecurrentCore, State
from seqmnist.model.fused import gelu_of_scaled_sum, linear_glu_residual
from seqmnist.model.options import LRUOptions
from seqmnist.model.scan import linear_recurrence

# |lambda| = exp(-nu) < 1 for every finite nu_log, but in floating point
# exp(-nu) rounds to 1 once nu < 6e-8 (float32). Bounding nu below by 1e-6
# (|lambda| <= 0.999999, a memory of 10^6 steps) keeps the eigenvalues inside
# the unit circle in floating point too, whatever training does to nu_log;
# the upper bound (|lambda| = e^-10^4 = 0) and the phase's bound only keep
# exp() from overflowing to inf, whose gradient would be NaN.
_NU_LOG_MIN = math.log(1e-6)
_NU_LOG_MAX = math.log(1e4)
_THETA_LOG_MAX = math.log(1e6)


class LRU(nn.Module):
    """The recurrence itself: (B, T, H) -> (B, T, H) through a complex state of ``state_size``."""

    def __init__(
        self, width: int, state_size: int, r_min: float, r_max: float, max_phase: float
    ) -> None:
        super().__init__()
        self.width = width
        self.state_size = state_size
        self.method = "auto"  # scan.linear_recurrence's method; tests set the others
        # Ring initialisation, in float64 so r_max close to 1 survives.
        u1 = 1 - torch.rand(state_size, dtype=torch.float64)  # (0, 1]
        u2 = 1 - torch.rand(state_size, dtype=torch.float64)
        modulus_squared = (u1 * (r_max**2 - r_min**2) + r_min**2).clamp_min(1e-30)
        nu_log = torch.log(-0.5 * torch.log(modulus_squared))
        theta_log = torch.log(max_phase * u2)
        gamma_log = torch.log(torch.sqrt(1 - modulus_squared))
        self.nu_log = nn.Parameter(nu_log.float())
        self.theta_log = nn.Parameter(theta_log.float())
        self.gamma_log = nn.Parameter(gamma_log.float())
        self.B_re = nn.Parameter(torch.randn(state_size, width) / math.sqrt(2 * width))
        self.B_im = nn.Parameter(torch.randn(state_size, width) / math.sqrt(2 * width))
        self.C_re = nn.Parameter(torch.randn(width, state_size) / math.sqrt(state_size))
        self.C_im = nn.Parameter(torch.randn(width, state_size) / math.sqrt(state_size))
        self.D = nn.Parameter(torch.randn(width))

    def eigenvalues(self) -> torch.Tensor:
        """lambda (state_size,), complex, strictly inside the unit circle."""
        nu = torch.exp(self.nu_log.clamp(_NU_LOG_MIN, _NU_LOG_MAX))
        theta = torch.exp(self.theta_log.clamp(max=_THETA_LOG_MAX))
        return torch.polar(torch.exp(-nu), theta)

    def _input_weight(self) -> torch.Tensor:
        # Rows alternate Re and Im of gamma * B, so one real matmul gives the
        # complex input in the memory layout of a complex tensor.
        gamma = torch.exp(self.gamma_log).unsqueeze(1)  # (N, 1)
        weight = torch.stack((self.B_re * gamma, self.B_im * gamma), dim=1)  # (N, 2, H)
        return weight.reshape(2 * self.state_size, self.width)  # (2N, H)

    def _output_weight(self) -> torch.Tensor:
        # Re(C x) = C_re x_re - C_im x_im: columns alternate C_re and -C_im.
        weight = torch.stack((self.C_re, -self.C_im), dim=2)  # (H, N, 2)
        return weight.reshape(self.width, 2 * self.state_size)  # (H, 2N)

    def _drive(self, u: torch.Tensor) -> torch.Tensor:
        """gamma * B u as a complex tensor: (..., H) -> (..., N)."""
        drive = F.linear(u, self._input_weight())  # (..., 2N)
        if drive.dtype in (torch.bfloat16, torch.float16):  # no complex bf16: scan in float32
            drive = drive.float()
        return torch.view_as_complex(drive.unflatten(-1, (self.state_size, 2)))  # (..., N)

    def _read(self, x: torch.Tensor, u: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        """Re(C x) + D u, or its GELU: (..., N) complex -> (..., H)."""
        read = F.linear(torch.view_as_real(x).flatten(-2), self._output_weight())
        return gelu_of_scaled_sum(read, self.D, u) if gelu else read + self.D * u

    def forward(self, u: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        """(B, T, H) -> (B, T, H): y, or GELU(y) with ``gelu`` (the block's next step, fused
        with the readout's sum: one pass where three would run)."""
        if torch.jit.is_tracing():
            y = self.forward_real(u)
            return F.gelu(y) if gelu else y
        x = linear_recurrence(self.eigenvalues(), self._drive(u), method=self.method)  # (B, T, N)
        return self._read(x, u, gelu)

    def forward_real(self, u: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, H)
        """The same recurrence in real arithmetic, a plain loop: what ONNX export traces,
        since ONNX has no complex type."""
        nu = torch.exp(self.nu_log.clamp(_NU_LOG_MIN, _NU_LOG_MAX))
        theta = torch.exp(self.theta_log.clamp(max=_THETA_LOG_MAX))
        modulus = torch.exp(-nu)
        lambda_re, lambda_im = modulus * torch.cos(theta), modulus * torch.sin(theta)  # (N,)
        drive = F.linear(u, self._input_weight()).unflatten(
            -1, (self.state_size, 2)
        )  # (B, T, N, 2)
        # From x_0 = 0 the first state is the first drive (a zeros_like would
        # be traced with the example's batch size, fixing it in the graph).
        x_re, x_im = drive[:, 0, :, 0], drive[:, 0, :, 1]  # (B, N)
        states = [drive[:, 0]]
        for t in range(1, u.shape[1]):
            x_re, x_im = (
                lambda_re * x_re - lambda_im * x_im + drive[:, t, :, 0],
                lambda_re * x_im + lambda_im * x_re + drive[:, t, :, 1],
            )
            states.append(torch.stack((x_re, x_im), dim=-1))  # (B, N, 2)
        x = torch.stack(states, dim=1).flatten(-2)  # (B, T, 2N), laid out as view_as_real's
        return F.linear(x, self._output_weight()) + self.D * u

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> torch.Tensor:
        dtype = torch.complex128 if reference.dtype == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.state_size, dtype=dtype, device=reference.device)

    def step(self, u: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.addcmul(self._drive(u), self.eigenvalues(), x)  # (B, N)
        return self._read(x, u), x


class LRUCore(RecurrentCore):
    """One block: u = encoder(x) or x; u + GLU(GELU(LRU(LayerNorm(u))))."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        state_size: int,
        r_min: float,
        r_max: float,
        max_phase: float,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = hidden_size
        self.encoder = nn.Linear(input_size, hidden_size) if input_size != hidden_size else None
        self.norm = nn.LayerNorm(hidden_size)
        self.lru = LRU(hidden_size, state_size, r_min, r_max, max_phase)
        self.glu = nn.Linear(hidden_size, 2 * hidden_size)  # its halves: value and gate

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.encoder is None else self.encoder(x)  # (..., H)

    def _leave(self, u: torch.Tensor, activated: torch.Tensor) -> torch.Tensor:
        return linear_glu_residual(self.glu, activated, residual=u)  # u + GLU(GELU(y)), (..., H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        u = self._enter(x)
        return self._leave(u, self.lru(self.norm(u), gelu=True))

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        return self.lru.initial_state(batch_size, reference)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self._enter(x)
        y, state = self.lru.step(self.norm(u), state)
        return self._leave(u, F.gelu(y)), state


def build(spec) -> RecurrentCore:
    """One LRU block per direction; ``spec.options`` is an LRUOptions (None: its defaults)."""
    options = spec.options or LRUOptions()

    def one() -> LRUCore:
        return LRUCore(
            spec.input_size,
            spec.hidden_size,
            options.state_size or spec.hidden_size,
            options.r_min,
            options.r_max,
            options.max_phase,
        )

    return Bidirectional(one(), one()) if spec.bidirectional else one()
