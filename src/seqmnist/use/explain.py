"""Watch the network read: class probabilities after each time step.

At step t the probabilities are the model's answer had the sequence ended
after step t. For a one-directional model that is the readout of the outputs
up to t, which have seen nothing later, so one pass gives every step. A
bidirectional model's outputs at t have already seen the rest of the image
through the backward direction; there both directions are run again over the
first t steps alone (the backward direction then starts at step t), so each
row keeps the same meaning, at one extra pass per step shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from seqmnist.model import RecurrentClassifier

# Long sequences (784 pixels) are shown at about this many evenly spaced steps.
MAX_POINTS = 56
STEP_NAMES = {"rows": "row", "columns": "column", "pixels": "pixel", "permuted": "pixel"}


@dataclass(frozen=True)
class Explanation:
    """Per-step probabilities for one image."""

    source: str
    view: str
    steps: tuple[int, ...]  # steps read so far at each point, 1-based
    probabilities: np.ndarray = field(repr=False)  # (points, classes)
    class_names: tuple[str, ...]
    bidirectional: bool
    image: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1]

    @property
    def step_name(self) -> str:
        return STEP_NAMES[self.view]

    @property
    def final_label(self) -> str:
        return self.class_names[int(self.probabilities[-1].argmax())]

    def first_settled_step(self) -> int:
        """The step from which the leading class no longer changes."""
        leaders = self.probabilities.argmax(axis=1)
        changes = np.flatnonzero(leaders != leaders[-1])
        return self.steps[changes[-1] + 1] if len(changes) else self.steps[0]

    def to_dict(self) -> dict:
        return {
            "file": self.source,
            "view": self.view,
            "bidirectional": self.bidirectional,
            "steps": list(self.steps),
            "probabilities": self.probabilities.tolist(),
        }


def step_ends(total: int, max_points: int = MAX_POINTS) -> list[int]:
    """Which prefix lengths to show: all of a short sequence, evenly spaced ones of a long one."""
    stride = math.ceil(total / max_points)
    ends = list(range(stride, total + 1, stride))
    return ends if ends[-1] == total else [*ends, total]


@torch.inference_mode()
def step_probabilities(
    model: RecurrentClassifier, images: torch.Tensor, ends: list[int]
) -> torch.Tensor:
    """Probabilities (batch, len(ends), classes) had the sequence ended after each of ``ends``."""
    assert not model.training, "dropout would make the steps disagree with the prediction"
    sequence = model.view(images)  # (B, T, F)
    if model.bidirectional:
        features = [model.read_out(model.read_sequence(sequence[:, :end])) for end in ends]
    else:
        outputs = model.read_sequence(sequence)  # (B, T, H): step t has seen steps 0..t only
        features = [model.read_out(outputs[:, :end]) for end in ends]
    logits = model.head(torch.stack(features, dim=1))  # (B, S, C)
    return logits.float().softmax(dim=-1)


def explain(
    model: RecurrentClassifier,
    images: np.ndarray,
    sources: list[str],
    class_names: tuple[str, ...],
    max_points: int = MAX_POINTS,
) -> list[Explanation]:
    """Explanations for prepared images (N, H, W) float in [0, 1]."""
    device = next(model.parameters()).device
    ends = step_ends(model.view.steps, max_points)
    probabilities = step_probabilities(model, torch.from_numpy(images).to(device), ends).cpu()
    return [
        Explanation(
            source=source,
            view=model.view.kind,
            steps=tuple(ends),
            probabilities=rows.numpy(),  # (S, C)
            class_names=class_names,
            bidirectional=model.bidirectional,
            image=image,
        )
        for source, rows, image in zip(sources, probabilities, images, strict=True)
    ]
