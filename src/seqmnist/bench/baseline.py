"""The baseline: the same model trained the way a typical PyTorch user writes it.

TensorDataset of float images + DataLoader(shuffle=True), each batch moved
with ``.to(device)``, a plain fp32 recurrent layer, Adam. Nothing here is
tuned; it is the loop seqmnist's trainer is measured against.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqmnist.config import RunConfig
from seqmnist.errors import ConfigError
from seqmnist.model.recurrent import RECURRENT_LAYERS


class BaselineClassifier(nn.Module):
    def __init__(self, layer: nn.RNNBase, num_classes: int) -> None:
        super().__init__()
        self.rnn = layer
        directions = 2 if layer.bidirectional else 1
        self.fc = nn.Linear(layer.hidden_size * directions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, D*H)
        return self.fc(out[:, -1, :])


def build_baseline(config: RunConfig, image_shape: tuple[int, int], num_classes: int) -> nn.Module:
    """The plain-PyTorch twin of a rows-view model with equal layer widths."""
    model = config.model
    if model.view != "rows" or len(set(model.hidden_sizes)) != 1:
        raise ConfigError(
            "the baseline mirrors rows-view models with equal layer widths; "
            "benchmark another preset or change --view/--hidden-sizes"
        )
    layer = RECURRENT_LAYERS[model.cell](
        image_shape[1], model.hidden_sizes[0], num_layers=len(model.hidden_sizes),
        batch_first=True, bidirectional=model.bidirectional,
    )  # fmt: skip
    return BaselineClassifier(layer, num_classes)


class BaselineTrainer:
    """Trains the baseline one batch at a time from an endless shuffled DataLoader."""

    def __init__(
        self, config: RunConfig, images: np.ndarray, labels: np.ndarray, num_classes: int,
        device: torch.device,
    ) -> None:  # fmt: skip
        torch.manual_seed(config.train.seed)
        self.device = device
        self.model = build_baseline(config, images.shape[1:], num_classes).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr)
        self.criterion = nn.CrossEntropyLoss()
        dataset = TensorDataset(
            torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()
        )
        self.loader = DataLoader(dataset, batch_size=config.train.batch_size, shuffle=True)
        self._batches = iter(self.loader)

    def step(self) -> None:
        try:
            images, labels = next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            images, labels = next(self._batches)
        images, labels = images.to(self.device), labels.to(self.device)
        outputs = self.model(images)
        loss = self.criterion(outputs, labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
