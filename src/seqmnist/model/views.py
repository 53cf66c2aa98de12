"""Sequence views: how an image becomes a sequence of feature vectors.

The view is the model's first stage, so training, evaluation, export and
prediction all feed the same raw images, (batch, height, width) in [0, 1],
and can never disagree about how they are read.
"""

from __future__ import annotations

import torch
from torch import nn


def make_permutation(seed: int, length: int) -> torch.Tensor:
    """The fixed pixel order of the permuted view, drawn from its own seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(length, generator=generator)


class SequenceView(nn.Module):
    """Reads (batch, height, width) images as (batch, time, features) sequences."""

    def __init__(self, kind: str, image_shape: tuple[int, int], permutation_seed: int = 0) -> None:
        super().__init__()
        self.kind = kind
        self.height, self.width = image_shape
        pixels = self.height * self.width
        # The permutation is a buffer so it is saved with the weights: a run
        # can always be evaluated with the pixel order it was trained on.
        permutation = make_permutation(permutation_seed, pixels) if kind == "permuted" else None
        self.register_buffer("permutation", permutation)

    @property
    def steps(self) -> int:
        return {"rows": self.height, "columns": self.width}.get(self.kind, self.height * self.width)

    @property
    def features(self) -> int:
        return {"rows": self.width, "columns": self.height}.get(self.kind, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "rows":
            return images  # (B, H, W): one row per step
        if self.kind == "columns":
            return images.transpose(1, 2)  # (B, W, H): one column per step
        flat = images.reshape(images.shape[0], -1, 1)  # (B, H*W, 1): one pixel per step
        if self.kind == "permuted":
            flat = flat[:, self.permutation]  # (B, H*W, 1) in the fixed random order
        return flat

    def extra_repr(self) -> str:
        return f"kind={self.kind}, steps={self.steps}, features={self.features}"
