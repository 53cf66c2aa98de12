"""The recurrent classifier: sequence view -> stack of recurrent cores -> readout -> logits.

The cores come from the registry (model/registry.py), one per layer so widths
may differ (reference 1 stacks 32 then 64); the classifier knows only the core
contract (model/core.py), so every family trains, evaluates, explains and
exports through the same code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from seqmnist.model.core import RecurrentCore
from seqmnist.model.registry import LayerSpec, family
from seqmnist.model.views import SequenceView

if TYPE_CHECKING:  # the model reads a ModelConfig's fields; it never imports the config module
    from seqmnist.config import ModelConfig


class RecurrentClassifier(nn.Module):
    """Classifies (batch, height, width) images in [0, 1]; returns (batch, classes) logits."""

    def __init__(self, config: ModelConfig, image_shape: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.readout = config.readout
        self.bidirectional = config.bidirectional
        self.cell = config.cell
        self.view = SequenceView(config.view, image_shape, config.permutation_seed)
        build = family(config.cell).build
        options = getattr(config, config.cell, None)  # the family's own section, if it has one
        layers: list[RecurrentCore] = []
        inputs = self.view.features
        for hidden in config.hidden_sizes:
            core = build(LayerSpec(inputs, hidden, config.bidirectional, self.view.steps, options))
            layers.append(core)
            inputs = core.output_size
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(inputs, num_classes)
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
            x = layer(x)  # (B, T, layer.output_size)
        return x


def _init_head(head: nn.Linear, scheme: str) -> None:
    if scheme == "normal":  # references 1, 2 and 5: N(0, 1) weights and bias
        nn.init.normal_(head.weight, std=1.0)
        nn.init.normal_(head.bias, std=1.0)
    elif scheme == "truncated_normal":  # references 3 and 4
        nn.init.trunc_normal_(head.weight, std=0.1, a=-0.2, b=0.2)
        nn.init.constant_(head.bias, 0.1)


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
