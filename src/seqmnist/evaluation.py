"""The one evaluation loop: accuracy, loss and confusion over a whole split.

Every reported figure comes from ``evaluate``: validation during training
(and so the choice of the best model), the final test figures in
summary.json, ``seqmnist eval``, the benchmark's accuracies. It always runs in
fp32, whatever precision trained the model (see runtime.py), so a run's
summary and a later ``seqmnist eval`` of its weights agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from seqmnist.errors import NonFiniteOutputs
from seqmnist.model.inputs import to_unit_float
from seqmnist.runtime import exact_fp32


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


@dataclass
class DeviceSplit:
    """A split kept whole on the device as uint8; batches are converted as they are drawn."""

    images: torch.Tensor  # (N, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    @classmethod
    def from_arrays(cls, images, labels, device: torch.device) -> DeviceSplit:
        return cls(torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device))

    def __len__(self) -> int:
        return len(self.labels)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    split: str,
    num_classes: int,
    batch_size: int,
) -> Evaluation:
    """Evaluate on uint8 ``images`` (N, H, W) and ``labels`` (N,), already on the model's device.

    Outputs that are NaN or infinite raise NonFiniteOutputs: they are a broken
    model, not a figure.
    """
    was_training = model.training
    model.eval()
    device = labels.device
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    non_finite = torch.zeros((), device=device, dtype=torch.int64)  # images with a bad logit
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start : start + batch_size]
        with exact_fp32():
            logits = model(to_unit_float(images[start : start + batch_size])).float()  # (B, C)
        non_finite += (~torch.isfinite(logits).all(dim=1)).sum()
        loss_sum += F.cross_entropy(logits, batch_labels, reduction="sum").double()
        predictions = logits.argmax(dim=1)
        confusion += torch.bincount(
            batch_labels * num_classes + predictions, minlength=num_classes**2
        )
    model.train(was_training)
    n = len(labels)
    if (bad := int(non_finite)) > 0:
        raise NonFiniteOutputs(
            f"the model's outputs are NaN or infinite for {bad} of the {n} {split} images"
        )
    confusion_matrix = confusion.view(num_classes, num_classes).cpu()
    return Evaluation(
        split=split,
        accuracy=confusion_matrix.diagonal().sum().item() / n,
        loss=loss_sum.item() / n,
        n=n,
        confusion=confusion_matrix.tolist(),
    )
