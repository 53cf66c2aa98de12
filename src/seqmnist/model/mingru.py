"""minGRU and minLSTM: Feng et al. 2024, "Were RNNs All We Needed?".

GRU and LSTM with every dependence on h_{t-1} taken out of the gates and the
candidate, so each is a linear recurrence h_t = a_t * h_{t-1} + b_t whose
a and b come from the input alone, and training runs it in parallel:

    minGRU:  z_t = sigmoid(linear_z(x_t)),  h~_t = g(linear_h(x_t)),
             h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM: f_t = sigmoid(linear_f(x_t)),  i_t = sigmoid(linear_i(x_t)),
             f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t),
             h_t = f'_t * h_{t-1} + i'_t * h~_t

with the paper's g(x) = x + 1/2 for x >= 0, sigmoid(x) otherwise, which keeps
h~ positive so the log-space scan applies. Gates are computed from their
logits in the forms that cannot overflow (1 - sigmoid(k) = sigmoid(-k);
f' = sigmoid(-diff) with the paper's diff = softplus(-f) - softplus(-i)).

The paper trains with the log-space scan; ``method = "log"`` runs it, but by
default the same recurrence goes through scan.linear_recurrence, which is
exact, faster on a CPU (a 3-block, 78k-parameter minGRU trained at 3,000
samples/s against 900 with the log-space scan at 28 steps, 103 against 31
at 784) and keeps float32 precision where the log-space sums of saturated
gates lose it.

One layer of a seqmnist stack is a pre-norm residual block, the layout of
lucidrains/minGRU-pytorch's language model:
    u = encoder(x) (a linear map, only when input_size != hidden_size),
    v = u + minRNN(LayerNorm(u)),
    out = v + MLP(LayerNorm(v)),  MLP = Linear(H, 2H) -> GELU -> Linear(2H, H).
Within a layer the state enters the output linearly; the MLP is the block's
nonlinearity on it (the next layer's gates are the other).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.model import native
from seqmnist.model.core import Bidirectional, RecurrentCore, State
from seqmnist.model.fused import GELUMLP, bias_gradient
from seqmnist.model.scan import linear_recurrence, log_linear_recurrence

MLP_EXPANSION = 2


def g(x: torch.Tensor) -> torch.Tensor:
    """The paper's activation for the candidate state: positive, continuous, linear for x >= 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log g(x), computed without forming g(x)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def _float(x: torch.Tensor) -> torch.Tensor:
    # The scan runs in at least float32: bf16's 8 bits would compound over 784 steps.
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def _g_fast(x: torch.Tensor) -> torch.Tensor:
    """g(x) = sigmoid(min(x, 0)) + max(x, 0): the same values as ``g`` without a mask.

    On this CPU ``torch.where`` and ``masked_fill`` take ~1.3 ms on a
    (128, 28, 64) tensor, against ~0.05 ms for a clamp: masks cost more than
    the scan, so the training path avoids them.
    """
    return torch.sigmoid(x.clamp(max=0)).add_(x.clamp(min=0))


def _g_and_slope(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g(x) and g'(x) = 1 for x >= 0, sigmoid'(x) below, again without a mask."""
    low = torch.sigmoid(x.clamp(max=0))  # 1/2 where x >= 0
    step = torch.ge(x, 0, out=torch.empty_like(x))  # 1.0 where x >= 0, as floats
    slope = torch.add(low * (1 - low), step, alpha=0.75)  # 1/4 + 3/4 = 1 where x >= 0
    return low.add_(x.clamp(min=0)), slope


def compiled_gates_take(logits: torch.Tensor) -> bool:
    """Whether the compiled gates (native/gates.cpp) run for ``logits`` (native.takes).

    They compute what the torch operations below do in one pass over memory
    instead of a dozen. Measured on the 2-core Xeon, (128, 28, H = 60) logits:
    minLSTM's forward 1.3 to 0.7 ms and backward 2.3 to 1.0 ms; minGRU's 0.8
    to 0.6 ms and 1.4 to 0.55 ms.
    """
    return native.takes(logits)


def _gru_coefficients(logits):
    """minGRU: logits [k, h~] (..., 2H) -> a = 1 - z = sigmoid(-k), b = z * g(h~)."""
    k, h_tilde = logits.chunk(2, dim=-1)
    return torch.sigmoid(-k), _g_fast(h_tilde).mul_(torch.sigmoid(k))


def _gru_coefficients_backward(logits, grad_a, grad_b):
    k, h_tilde = logits.chunk(2, dim=-1)
    z = torch.sigmoid(k)
    g_value, g_slope = _g_and_slope(h_tilde)
    grad = torch.empty_like(logits)
    grad_k, grad_h = grad.chunk(2, dim=-1)
    # da/dk = -z(1 - z), db/dk = z(1 - z) g(h~), db/dh~ = z g'(h~)
    torch.mul(torch.addcmul(-grad_a, grad_b, g_value), z * (1 - z), out=grad_k)
    torch.mul(grad_b * z, g_slope, out=grad_h)
    return grad


def _lstm_coefficients(logits):
    """minLSTM: logits [f, i, h~] (..., 3H) -> a = f' = sigmoid(-diff),
    b = i' * g(h~) = sigmoid(diff) * g(h~), with diff = softplus(-f) - softplus(-i)
    = log i - log f, as in the paper's log-space code."""
    f, i, h_tilde = logits.chunk(3, dim=-1)
    diff = F.softplus(-f) - F.softplus(-i)
    return torch.sigmoid(-diff), _g_fast(h_tilde).mul_(torch.sigmoid(diff))


def _lstm_coefficients_backward(logits, grad_a, grad_b):
    f, i, h_tilde = logits.chunk(3, dim=-1)
    a = torch.sigmoid(F.softplus(-i) - F.softplus(-f))  # f'
    g_value, g_slope = _g_and_slope(h_tilde)
    # da/ddiff = -f'i', db/ddiff = f'i' g(h~), db/dh~ = i' g'(h~);
    # ddiff/df = -sigmoid(-f), ddiff/di = sigmoid(-i).
    grad_diff = torch.addcmul(-grad_a, grad_b, g_value).mul_(a * (1 - a))
    grad = torch.empty_like(logits)
    grad_f, grad_i, grad_h = grad.chunk(3, dim=-1)
    torch.mul(grad_diff, torch.sigmoid(-f), out=grad_f).neg_()
    torch.mul(grad_diff, torch.sigmoid(-i), out=grad_i)
    torch.mul(grad_b * (1 - a), g_slope, out=grad_h)
    return grad


# gates -> the torch forms: 2 is minGRU, 3 minLSTM (native.mingates_* take the same number).
_TORCH_COEFFICIENTS = {
    2: (_gru_coefficients, _gru_coefficients_backward),
    3: (_lstm_coefficients, _lstm_coefficients_backward),
}


class _Coefficients(torch.autograd.Function):
    """(logits without their bias, the bias, gates, compiled) -> the recurrence's a and b.

    Hand-written backward, one gradient buffer for the logits: autograd's
    would be about a dozen kernels and a cat of the halves, which at these
    sizes cost more than the scan itself (measured in the block's profile).
    ``compiled``: the same formulas in one pass that also adds the bias
    (compiled_gates_take), where addmm would first copy it into the logits.
    """

    @staticmethod
    def forward(ctx, logits, bias, gates: int, compiled: bool):
        ctx.save_for_backward(logits, bias)
        ctx.gates, ctx.compiled = gates, compiled
        if compiled:
            return native.mingates_forward(logits, bias, gates)
        return _TORCH_COEFFICIENTS[gates][0](logits + bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_a, grad_b):
        logits, bias = ctx.saved_tensors
        if ctx.compiled:
            grad = native.mingates_backward(logits, bias, ctx.gates, grad_a, grad_b)
        else:
            grad = _TORCH_COEFFICIENTS[ctx.gates][1](logits + bias, grad_a, grad_b)
        return grad, bias_gradient(grad, ctx.needs_input_grad[1]), None, None


class _MinRNN(nn.Module):
    """Shared by the two cells: the recurrence's a and b come from one linear map of x."""

    gates: int  # linear maps of x: the gates and the candidate

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        # One matmul for the gates and the candidate: the paper's linear_* maps stacked.
        self.linear = nn.Linear(input_size, self.gates * hidden_size)
        self.method = "auto"  # scan.linear_recurrence's method, or "log"
        self.compiled_gates: bool | None = None  # None: where compiled_gates_take says

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a and b of h_t = a_t * h_{t-1} + b_t: (..., F) -> two (..., H)."""
        logits = _float(F.linear(x, self.linear.weight))  # the bias is added with the gates
        compiled = self.compiled_gates
        if compiled is None:
            compiled = compiled_gates_take(logits)
        bias = self.linear.bias.to(logits.dtype)
        return _Coefficients.apply(logits, bias, self.gates, compiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        if self.method == "log":
            logits = _float(self.linear(x)).chunk(self.gates, dim=-1)  # each (B, T, H)
            return log_linear_recurrence(*self.log_coefficients(*logits))
        return linear_recurrence(*self.coefficients(x), method=self.method)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # (B, F), (B, H) -> (B, H)
        a, b = self.coefficients(x)
        return torch.addcmul(b, a, h)


class MinGRU(_MinRNN):
    """linear_z and linear_h are ``linear``'s two halves."""

    gates = 2

    @staticmethod
    def log_coefficients(
        k: torch.Tensor, h_tilde: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return -F.softplus(k), -F.softplus(-k) + log_g(h_tilde)  # log (1 - z), log z + log g(h~)


class MinLSTM(_MinRNN):
    """linear_f, linear_i and linear_h are ``linear``'s three thirds."""

    gates = 3

    @staticmethod
    def log_coefficients(f, i, h_tilde):
        diff = F.softplus(-f) - F.softplus(-i)
        return -F.softplus(diff), -F.softplus(-diff) + log_g(h_tilde)  # log f', log i' + log g(h~)


class MinRNNCore(RecurrentCore):
    """One block: u = encoder(x) or x; v = u + cell(LayerNorm(u)); v + MLP(LayerNorm(v))."""

    def __init__(self, cell: type[_MinRNN], input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.output_size = hidden_size
        self.encoder = nn.Linear(input_size, hidden_size) if input_size != hidden_size else None
        self.norm = nn.LayerNorm(hidden_size)
        self.cell = cell(hidden_size, hidden_size)
        self.mlp_norm = nn.LayerNorm(hidden_size)
        self.mlp = GELUMLP(hidden_size, MLP_EXPANSION * hidden_size)

    def _enter(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.encoder is None else self.encoder(x)  # (..., H)

    def _leave(self, u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        v = u + h  # (..., H)
        return v + self.mlp(self.mlp_norm(v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, H)
        u = self._enter(x)
        return self._leave(u, self.cell(self.norm(u)))

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        dtype = torch.float64 if reference.dtype == torch.float64 else torch.float32
        return torch.zeros(batch_size, self.output_size, dtype=dtype, device=reference.device)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self._enter(x)
        h = self.cell.step(self.norm(u), state)  # (B, H)
        return self._leave(u, h), h


def _build(cell: type[_MinRNN], spec) -> RecurrentCore:
    def one() -> MinRNNCore:
        return MinRNNCore(cell, spec.input_size, spec.hidden_size)

    return Bidirectional(one(), one()) if spec.bidirectional else one()


def build_mingru(spec) -> RecurrentCore:
    """One minGRU block per direction (no options)."""
    return _build(MinGRU, spec)


def build_minlstm(spec) -> RecurrentCore:
    """One minLSTM block per direction (no options)."""
    return _build(MinLSTM, spec)
