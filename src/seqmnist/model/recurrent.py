"""The recurrent classifier: sequence view -> stacked recurrent layers -> readout -> logits."""

from __future__ import annotations

import torch
from torch import nn

from seqmnist.config import ModelConfig
from seqmnist.model.views import SequenceView

# PyTorch's fused layers, one per cell: the time loop runs in C++/cuDNN.
RECURRENT_LAYERS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentClassifier(nn.Module):
    """Classifies (batch, height, width) images in [0, 1]; returns (batch, classes) logits."""

    def __init__(self, config: ModelConfig, image_shape: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.readout = config.readout
        self.bidirectional = config.bidirectional
        self.view = SequenceView(config.view, image_shape, config.permutation_seed)
        directions = 2 if config.bidirectional else 1
        layer_class = RECURRENT_LAYERS[config.cell]
        input_sizes = (self.view.features,) + tuple(
            size * directions for size in config.hidden_sizes[:-1]
        )
        # One module per layer so widths may differ (reference 1 stacks 32 then 64).
        self.layers = nn.ModuleList(
            layer_class(inputs, hidden, batch_first=True, bidirectional=config.bidirectional)
            for inputs, hidden in zip(input_sizes, config.hidden_sizes)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_sizes[-1] * directions, num_classes)
        if config.cell == "lstm":
            _set_forget_bias(self.layers, config.forget_bias)
        _init_head(self.head, config.head_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The readout vector that feeds the output layer: (batch, directions * hidden)."""
        return self.read_out(self.sequence_outputs(images))

    def read_out(self, outputs: torch.Tensor) -> torch.Tensor:
        """The readout of top-layer ``outputs`` (batch, time, directions * hidden)."""
        if self.readout == "mean":
            return outputs.mean(dim=1)  # (B, D*H)
        if self.readout == "last" or not self.bidirectional:
            # One direction: the last output is the final hidden state.
            return outputs[:, -1]  # (B, D*H)
        hidden = outputs.shape[-1] // 2
        # The backward direction ends at time step 0: that is its summary of
        # the whole sequence, while its output at the last step has seen one step.
        return torch.cat((outputs[:, -1, :hidden], outputs[:, 0, hidden:]), dim=1)  # (B, 2H)

    def sequence_outputs(self, images: torch.Tensor) -> torch.Tensor:
        """The top layer's output at every time step: (batch, time, directions * hidden)."""
        return self.read_sequence(self.view(images))  # (B, T, F) -> (B, T, D*H)

    def read_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Run the recurrent layers over a (batch, time, features) sequence of any length."""
        for index, layer in enumerate(self.layers):
            if index > 0:
                x = self.dropout(x)
            x, _ = layer(x)  # (B, T, D*H_layer)
        return x


def _set_forget_bias(layers: nn.ModuleList, value: float) -> None:
    # PyTorch orders LSTM gates (input, forget, cell, output) and adds two
    # biases; put the whole offset in one so the sum is ``value``.
    with torch.no_grad():
        for layer in layers:
            hidden = layer.hidden_size
            for name, bias in layer.named_parameters():
                if name.startswith("bias_ih"):
                    bias[hidden : 2 * hidden] = value
                elif name.startswith("bias_hh"):
                    bias[hidden : 2 * hidden] = 0.0


def _init_head(head: nn.Linear, scheme: str) -> None:
    if scheme == "normal":  # references 1, 2 and 5: N(0, 1) weights and bias
        nn.init.normal_(head.weight, std=1.0)
        nn.init.normal_(head.bias, std=1.0)
    elif scheme == "truncated_normal":  # references 3 and 4
        nn.init.trunc_normal_(head.weight, std=0.1, a=-0.2, b=0.2)
        nn.init.constant_(head.bias, 0.1)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
