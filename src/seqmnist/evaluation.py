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

from seqmnist.distributed import ONE_PROCESS, Ranks, all_sum
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
    ranks: Ranks = ONE_PROCESS,
) -> Evaluation:
    """Evaluate on uint8 ``images`` (N, H, W) and ``labels`` (N,), already on the model's device.

    Outputs that are NaN or infinite raise NonFiniteOutputs: they are a broken
    model, not a figure. Under torchrun (``ranks``) each process takes every
    N-th batch and the counts are summed; each batch's loss is kept apart and
    the same vector of them is summed in one order everywhere, so the figures
    are those of one process, exactly.
    """
    was_training = model.training
    model.eval()
    device = labels.device
    starts = range(0, len(labels), batch_size)
    batch_losses = torch.zeros(len(starts), device=device, dtype=torch.float64)
    # Confusion counts, then the count of images with a non-finite logit, summed over ranks.
    counts = torch.zeros(num_classes * num_classes + 1, device=device, dtype=torch.int64)
    for index, start in enumerate(starts):
        if index % ranks.world_size != ranks.rank:
            continue
        batch_labels = labels[start : start + batch_size]
        with exact_fp32():
            logits = model(to_unit_float(images[start : start + batch_size])).float()  # (B, C)
        counts[-1] += (~torch.isfinite(logits).all(dim=1)).sum()
        batch_losses[index] = F.cross_entropy(logits, batch_labels, reduction="sum").double()
        predictions = logits.argmax(dim=1)
        counts[:-1] += torch.bincount(
            batch_labels * num_classes + predictions, minlength=num_classes**2
        )
    all_sum(batch_losses, ranks)  # each entry comes from one rank; the others add 0.0
    all_sum(counts, ranks)
    model.train(was_training)
    n = len(labels)
    if (bad := int(counts[-1])) > 0:
        raise NonFiniteOutputs(
            f"the model's outputs are NaN or infinite for {bad} of the {n} {split} images"
        )
    confusion_matrix = counts[:-1].view(num_classes, num_classes).cpu()
    return Evaluation(
        split=split,
        accuracy=confusion_matrix.diagonal().sum().item() / n,
        loss=batch_losses.sum().item() / n,
        n=n,
        confusion=confusion_matrix.tolist(),
    )
