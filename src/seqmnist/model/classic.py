"""RNN, LSTM and GRU: PyTorch's fused layers behind the core contract.

Each class *is* the torch layer (a subclass), so its weights keep the names
nn.LSTM gives them and runs trained before the contract existed still load;
the time loop runs in oneDNN or cuDNN, and ONNX export writes one LSTM/GRU/RNN
node per layer.
"""

from __future__ import annotations

import torch
from torch import nn

from seqmnist.model.core import CoreError, RecurrentCore, State


class _Fused(RecurrentCore):
    """Shared by the three: forward drops the final state, step carries it."""

    def _setup(self) -> None:
        self.output_size = self.hidden_size * (2 if self.bidirectional else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self._fused(x)  # (B, T, D*H)
        return outputs

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        if self.bidirectional:
            raise CoreError(
                "a bidirectional layer cannot be run step by step (its outputs have read "
                "the whole sequence); train without --bidirectional to step it"
            )
        return reference.new_zeros(1, batch_size, self.hidden_size)  # (layers, B, H)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        outputs, state = self._fused(x.unsqueeze(1), state)  # (B, 1, H)
        return outputs[:, 0], state


class RNNCore(_Fused, nn.RNN):
    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        nn.RNN.__init__(
            self, input_size, hidden_size, batch_first=True, bidirectional=bidirectional
        )
        self._setup()

    def _fused(self, x, state=None):
        return nn.RNN.forward(self, x, state)


class GRUCore(_Fused, nn.GRU):
    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool) -> None:
        nn.GRU.__init__(
            self, input_size, hidden_size, batch_first=True, bidirectional=bidirectional
        )
        self._setup()

    def _fused(self, x, state=None):
        return nn.GRU.forward(self, x, state)


class LSTMCore(_Fused, nn.LSTM):
    def __init__(
        self, input_size: int, hidden_size: int, bidirectional: bool, forget_bias: float
    ) -> None:
        nn.LSTM.__init__(
            self, input_size, hidden_size, batch_first=True, bidirectional=bidirectional
        )
        self._setup()
        set_forget_bias(self, forget_bias)

    def _fused(self, x, state=None):
        return nn.LSTM.forward(self, x, state)

    def initial_state(self, batch_size: int, reference: torch.Tensor) -> State:
        zeros = super().initial_state(batch_size, reference)  # (1, B, H)
        return (zeros, zeros.clone())  # hidden and cell state


def set_forget_bias(layer: nn.LSTM, value: float) -> None:
    # PyTorch orders LSTM gates (input, forget, cell, output) and adds two
    # biases; put the whole offset in one so the sum is ``value``.
    hidden = layer.hidden_size
    with torch.no_grad():
        for name, bias in layer.named_parameters():
            if name.startswith("bias_ih"):
                bias[hidden : 2 * hidden] = value
            elif name.startswith("bias_hh"):
                bias[hidden : 2 * hidden] = 0.0


def build_rnn(spec) -> RNNCore:
    return RNNCore(spec.input_size, spec.hidden_size, spec.bidirectional)


def build_gru(spec) -> GRUCore:
    return GRUCore(spec.input_size, spec.hidden_size, spec.bidirectional)


def build_lstm(spec) -> LSTMCore:
    return LSTMCore(spec.input_size, spec.hidden_size, spec.bidirectional, spec.options.forget_bias)
