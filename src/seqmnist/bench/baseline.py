"""The baseline: the same model and recipe trained the way a typical PyTorch user writes it.

TensorDataset of float images + DataLoader(shuffle=True), each batch moved
with ``.to(device)``, a plain fp32 ``nn.LSTM`` (or RNN/GRU) and ``nn.Linear``
with PyTorch's own initialisation, the recipe's torch.optim optimizer with
torch's default (unfused) kernels, its learning-rate schedule and its
gradient clipping. Nothing here is tuned; it is the loop seqmnist's trainer
is measured against, so the two differ in how they loop, not in what they
train.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqmnist.config import ModelConfig, RunConfig, TrainConfig
from seqmnist.errors import ConfigError
from seqmnist.training.optim import build_schedule

# The layers a typical PyTorch user reaches for; the baseline has no other families.
PLAIN_LAYERS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class BaselineClassifier(nn.Module):
    def __init__(self, layer: nn.RNNBase, num_classes: int) -> None:
        super().__init__()
        self.rnn = layer
        directions = 2 if layer.bidirectional else 1
        self.fc = nn.Linear(layer.hidden_size * directions, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, T, F) -> (B, T, D*H)
        return self.fc(out[:, -1, :])  # (B, C)


def check_mirrors(model: ModelConfig) -> None:
    """Refuse, before any work, a model the baseline cannot be a twin of."""
    if model.cell not in PLAIN_LAYERS:
        raise ConfigError(
            f"the baseline is a plain nn.RNN/LSTM/GRU loop and has no {model.cell} twin; "
            "benchmark an rnn, lstm or gru preset"
        )
    if model.view != "rows" or len(set(model.hidden_sizes)) != 1:
        raise ConfigError(
            "the baseline mirrors rows-view models with equal layer widths; "
            "benchmark another preset or change --view/--hidden-sizes"
        )


def build_baseline(config: RunConfig, image_shape: tuple[int, int], num_classes: int) -> nn.Module:
    """The plain-PyTorch twin of a rows-view model with equal layer widths."""
    model = config.model
    check_mirrors(model)
    layer = PLAIN_LAYERS[model.cell](
        image_shape[1], model.hidden_sizes[0], num_layers=len(model.hidden_sizes),
        batch_first=True, bidirectional=model.bidirectional,
    )  # fmt: skip
    return BaselineClassifier(layer, num_classes)


def build_plain_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimizer as a user writes it: its settings, torch's default kernels."""
    parameters = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        # weight_decay given explicitly: torch's AdamW defaults to 0.01, the recipe's may differ.
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(parameters, lr=config.lr)


class BaselineTrainer:
    """Trains the baseline one batch at a time from an endless shuffled DataLoader."""

    def __init__(
        self, config: RunConfig, images: np.ndarray, labels: np.ndarray, num_classes: int,
        device: torch.device, total_steps: int,
    ) -> None:  # fmt: skip
        torch.manual_seed(config.train.seed)
        self.device = device
        self.grad_clip = config.train.grad_clip
        self.model = build_baseline(config, images.shape[1:], num_classes).to(device)
        self.optimizer = build_plain_optimizer(self.model, config.train)
        # The recipe's schedule is torch's own scheduler (OneCycleLR for onecycle) over the
        # same total steps, built by the same factory so the two cannot drift apart.
        self.schedule = build_schedule(self.optimizer, config.train, total_steps)
        self.criterion = nn.CrossEntropyLoss()
        dataset = TensorDataset(
            torch.from_numpy(images).float() / 255.0, torch.from_numpy(labels).long()
        )
        # drop_last: an epoch is the recipe's full batches, as in seqmnist's loop, so both
        # take the same number of steps for the same epochs (and, like it, a batch larger
        # than the data is cut to the data).
        batch_size = min(config.train.batch_size, len(dataset))
        self.loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
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
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
