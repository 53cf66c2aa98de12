"""Classify a person's own images with a trained run: prepare, batch, softmax."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from seqmnist.errors import NonFiniteOutputs
from seqmnist.runs import LoadedRun, load_run, repair_hint
from seqmnist.runtime import Runtime, exact_fp32
from seqmnist.use.explain import Explanation, explain
from seqmnist.use.preprocess import load_image, prepare_image

ImageSource = Path | str | Image.Image | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """One image's class probabilities, with the prepared input the model saw."""

    source: str
    probabilities: tuple[float, ...]
    class_names: tuple[str, ...]
    image: np.ndarray = field(repr=False)  # (H, W) float32 in [0, 1]

    @property
    def index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.class_names[self.index]

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(self.probabilities)[::-1][:count]
        return [(self.class_names[index], self.probabilities[index]) for index in order]

    def to_dict(self) -> dict:
        return {
            "file": self.source,
            "digit": self.index,  # the class index; for MNIST, the digit itself
            "label": self.label,
            "probabilities": list(self.probabilities),
            "top": [{"label": name, "probability": p} for name, p in self.top()],
        }


class Predictor:
    """A trained model ready for people's images: any picture in, probabilities out.

    >>> predictor = Predictor.from_run("runs/default")
    >>> predictor.predict(["three.png"])[0].label
    '3'
    """

    def __init__(self, run: LoadedRun, batch_size: int = 256) -> None:
        self.run = run
        self.batch_size = batch_size

    @classmethod
    def from_run(cls, run_dir: Path | str, runtime: Runtime | None = None) -> Predictor:
        """Load a run for prediction on ``runtime``'s device (default: the CPU).

        Probabilities are computed in fp32, as every reported figure is.
        """
        device = runtime.device if runtime is not None else torch.device("cpu")
        return cls(load_run(run_dir, device))

    @property
    def model(self) -> nn.Module:
        return self.run.model

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.run.info.image_shape

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.run.info.class_names

    def prepare(self, source: ImageSource) -> np.ndarray:
        """The MNIST-like (H, W) input for an image file, Pillow image or array."""
        if isinstance(source, (str, Path)):
            return load_image(source, self.image_shape)
        return prepare_image(source, self.image_shape)

    def predict(self, sources: Iterable[ImageSource]) -> list[Prediction]:
        """Prepare and classify each image; a bad one raises ImageError naming it."""
        sources = list(sources)
        images = [self.prepare(source) for source in sources]
        return self.classify(
            np.stack(images), [_name(source, i) for i, source in enumerate(sources)]
        )

    def explain(self, sources: Iterable[ImageSource]) -> list[Explanation]:
        """Class probabilities after each time step, for each image (see use/explain.py)."""
        sources = list(sources)
        images = np.stack([self.prepare(source) for source in sources])
        names = [_name(source, i) for i, source in enumerate(sources)]
        return explain(self.model, images, names, self.class_names)

    def check_finite(self, probabilities: torch.Tensor) -> None:
        """NaN or infinite outputs mean damaged weights: a NonFiniteOutputs saying how to mend them."""
        if not torch.isfinite(probabilities).all():
            raise NonFiniteOutputs(
                f"the model's outputs are NaN or infinite for these images: "
                f"{repair_hint(self.run.directory)}"
            )

    def classify(self, images: np.ndarray, names: Sequence[str]) -> list[Prediction]:
        """Classify already prepared images, (N, H, W) float in [0, 1]."""
        probabilities = softmax_in_batches(self.model, torch.from_numpy(images), self.batch_size)
        self.check_finite(probabilities)
        return [
            Prediction(name, tuple(map(float, row)), self.class_names, image)
            for name, row, image in zip(names, probabilities.tolist(), images, strict=True)
        ]


@torch.inference_mode()
def softmax_in_batches(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Class probabilities (N, classes) for float images (N, H, W) in [0, 1], on the CPU."""
    device = next(model.parameters()).device
    with exact_fp32():  # the precision of every reported figure (see evaluation.py)
        chunks = [
            model(images[start : start + batch_size].to(device).float()).float().softmax(dim=1)
            for start in range(0, len(images), batch_size)
        ]  # each (B, C)
    return torch.cat(chunks).cpu()  # (N, C)


def _name(source: ImageSource, index: int) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"image {index}"
