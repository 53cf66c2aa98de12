"""The one evaluation loop: accuracy, loss and confusion over a whole split."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.device import autocast


@dataclass(frozen=True)
class Evaluation:
    split: str
    accuracy: float
    loss: float
    n: int
    confusion: list[list[int]] = field(repr=False)  # [true class][predicted class]

    @property
    def per_class_accuracy(self) -> list[float]:
        return [
            row[index] / total if (total := sum(row)) else float("nan")
            for index, row in enumerate(self.confusion)
        ]

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "n": self.n,
            "per_class_accuracy": self.per_class_accuracy,
            "confusion": self.confusion,
        }


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels to float32 in [0, 1], as every model input is scaled."""
    return images.float().div_(255.0)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    split: str,
    num_classes: int,
    batch_size: int,
    precision: str = "fp32",
) -> Evaluation:
    """Evaluate on uint8 ``images`` (N, H, W) and ``labels`` (N,), already on the model's device."""
    was_training = model.training
    model.eval()
    device = labels.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start : start + batch_size]
        with autocast(device, precision):
            logits = model(to_unit_float(images[start : start + batch_size]))
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").double()
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(
            batch_labels * num_classes + predictions, minlength=num_classes**2
        )
    model.train(was_training)
    confusion_matrix = confusion.view(num_classes, num_classes).cpu()
    n = len(labels)
    return Evaluation(
        split=split,
        accuracy=confusion_matrix.diagonal().sum().item() / n,
        loss=loss_sum.item() / n,
        n=n,
        confusion=confusion_matrix.tolist(),
    )
