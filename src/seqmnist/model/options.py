"""Each recurrent family's own settings, as typed sections of the model configuration.

Plain dataclasses with no torch, so the configuration (and `seqmnist --help`)
stays light. A run's TOML holds them as tables, e.g. ``[model.lru]``; an
unknown key there is an error like anywhere else. The names are the papers'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from seqmnist.errors import ConfigError


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class LSTMOptions:
    forget_bias: float = field(default=1.0, metadata=_help("initial forget-gate bias"))

    def __post_init__(self) -> None:
        _require(
            _finite(self.forget_bias) and abs(self.forget_bias) <= 1e6,
            f"lstm forget_bias must be a finite number of at most 1e6, got {self.forget_bias}",
        )


@dataclass(frozen=True)
class LRUOptions:
    """Orvieto et al. 2023: a complex diagonal recurrence, eigenvalues on a ring."""

    state_size: int | None = field(
        default=None, metadata=_help("complex state units per layer (none: the layer's width)")
    )
    r_min: float = field(default=0.9, metadata=_help("smallest eigenvalue modulus at init"))
    r_max: float = field(default=0.999, metadata=_help("largest eigenvalue modulus at init"))
    max_phase: float = field(
        default=2 * math.pi, metadata=_help("largest eigenvalue phase at init (radians)")
    )

    def __post_init__(self) -> None:
        _require(
            self.state_size is None or 1 <= self.state_size <= 1_000_000,
            f"lru state_size must be between 1 and 1,000,000, got {self.state_size}",
        )
        _require(
            _finite(self.r_min) and _finite(self.r_max) and 0 <= self.r_min <= self.r_max < 1,
            f"lru needs 0 <= r_min <= r_max < 1, got r_min {self.r_min}, r_max {self.r_max}",
        )
        _require(
            _finite(self.max_phase) and 0 < self.max_phase <= 2 * math.pi,
            f"lru max_phase must be in (0, 2*pi], got {self.max_phase}",
        )


@dataclass(frozen=True)
class CoRNNOptions:
    """Rusch and Mishra 2021: a coupled oscillator, y'' = tanh(W y + W' y' + V u) - gamma y - epsilon y'."""

    dt: float = field(default=0.042, metadata=_help("time step of the discretised oscillator"))
    gamma: float = field(default=2.7, metadata=_help("restoring force (stiffness)"))
    epsilon: float = field(default=4.7, metadata=_help("damping"))

    def __post_init__(self) -> None:
        for name in ("dt", "gamma", "epsilon"):
            value = getattr(self, name)
            _require(
                _finite(value) and 0 < value <= 1e3,
                f"cornn {name} must be a positive number of at most 1000, got {value}",
            )


@dataclass(frozen=True)
class LEMOptions:
    """Rusch et al. 2022: long expressive memory, learned multiscale time steps."""

    dt: float = field(default=1.0, metadata=_help("largest time step (scales the learned ones)"))

    def __post_init__(self) -> None:
        _require(
            _finite(self.dt) and 0 < self.dt <= 1e3,
            f"lem dt must be a positive number of at most 1000, got {self.dt}",
        )


@dataclass(frozen=True)
class IndRNNOptions:
    """Li et al. 2018: each unit recurs only on itself, h_t = relu(W x_t + u * h_{t-1} + b)."""

    recurrent_max: float | None = field(
        default=None,
        metadata=_help("bound on |u| (none: 2**(1/T), so no unit's memory explodes over T steps)"),
    )
    residual: bool = field(
        default=True, metadata=_help("residual connections between layers of equal width")
    )
    batch_norm: bool = field(
        default=False,
        metadata=_help(
            "batch norm after each layer over batch and time, as the paper's sMNIST nets"
            " (stepping then matches forward in eval only)"
        ),
    )

    def __post_init__(self) -> None:
        _require(
            self.recurrent_max is None
            or (_finite(self.recurrent_max) and 0 < self.recurrent_max <= 1e3),
            f"indrnn recurrent_max must be a positive number of at most 1000, got {self.recurrent_max}",
        )


# Every family's --cell name, in the order help and tables list them; the
# registry (model/registry.py) builds each, and a test holds the two equal.
CELLS = ("rnn", "lstm", "gru", "lru", "mingru", "minlstm", "cornn", "lem", "indrnn")

# The families with settings of their own, by the --cell name that selects them.
FAMILY_OPTIONS = {
    "lstm": LSTMOptions,
    "lru": LRUOptions,
    "cornn": CoRNNOptions,
    "lem": LEMOptions,
    "indrnn": IndRNNOptions,
}
