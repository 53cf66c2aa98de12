"""The recurrent core contract: what every family in model/ provides.

A core maps a sequence ``x`` of shape (batch, time, input_size) to outputs
(batch, time, output_size): one layer of a stack. The classifier
(view -> cores -> readout -> head) knows nothing else about it, so training,
evaluation, explain, export, bench and resume work with any core.

A causal core can also be stepped: ``initial_state(batch, reference)`` then
``step(x_t, state) -> (y_t, state)`` one time step at a time, giving the same
outputs as ``forward`` on the whole sequence (tests hold every family to it).
A core that cannot do something says so with ``CoreError``, naming what to
use instead, rather than computing something else.

``State`` is whatever the family carries between steps: a tensor, or a tuple
of tensors, each with the batch on its first axis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.errors import ConfigError

State = Any  # a tensor or a tuple of tensors; the family decides


class CoreError(ConfigError):
    """A core asked for something it cannot do (step a bidirectional core, export, ...)."""


class RecurrentCore(nn.Module):
    """Base of every recurrent family: (B, T, input_size) -> (B, T, output_size).

    Subclasses set ``input_size`` and ``output_size`` and implement ``forward``;
    causal ones also implement ``initial_state`` and ``step``. ``exportable``
    says whether the TorchScript ONNX exporter can trace it.
    """

    input_size: int
    output_size: int
    exportable: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F) -> (B, T, O)
        raise NotImplementedError

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        """The state before the first step, on ``reference``'s device and dtype."""
        raise CoreError(f"{type(self).__name__} cannot be run step by step")

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step: ``x`` (B, input_size) -> output (B, output_size), next state."""
        raise CoreError(f"{type(self).__name__} cannot be run step by step")


def run_stepwise(core: RecurrentCore, x: torch.Tensor) -> torch.Tensor:
    """The whole sequence through ``core.step``, one step at a time: (B, T, F) -> (B, T, O).

    The sequential reference the parallel forms are tested against, and what
    per-step inference does.
    """
    state = core.initial_state(x.shape[0], x)
    outputs = []
    for t in range(x.shape[1]):
        y, state = core.step(x[:, t], state)  # (B, O)
        outputs.append(y)
    return torch.stack(outputs, dim=1)  # (B, T, O)


def time_major_drive(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The input projection of every step, time-major: (B, T, F) -> (T, B, out).

    x is made contiguous first (a copy of the input, the narrow side), so
    F.linear is one addmm whatever needs gradients. On the strided
    transpose, torch's matmul copies and folds it into one mm when the weight
    requires grad, and runs a bmm over an expanded weight when not (LEM's
    weights stacked under no_grad); on the AMD EPYC (AVX-512 BF16) the two
    summed in different orders, so inference drifted from training in the
    last bit.
    """
    return F.linear(x.transpose(0, 1).contiguous(), weight, bias)


class Bidirectional(RecurrentCore):
    """Any causal core read both ways: [forward(x), flip(backward(flip(x)))] on the last axis.

    For families with no fused bidirectional form. Its output at step t has
    seen the whole sequence, so it cannot be stepped.
    """

    def __init__(self, forward_core: RecurrentCore, backward_core: RecurrentCore) -> None:
        super().__init__()
        self.forward_core = forward_core
        self.backward_core = backward_core
        self.input_size = forward_core.input_size
        self.output_size = forward_core.output_size + backward_core.output_size
        self.exportable = forward_core.exportable and backward_core.exportable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ahead = self.forward_core(x)  # (B, T, O)
        behind = self.backward_core(x.flip(1)).flip(1)  # (B, T, O), step t has read T-1..t
        return torch.cat((ahead, behind), dim=-1)  # (B, T, 2O)

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        raise CoreError(
            "a bidirectional core cannot be run step by step (its outputs have read the "
            "whole sequence); train without --bidirectional to step it"
        )
