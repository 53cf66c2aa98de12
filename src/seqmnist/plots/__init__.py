"""Pictures of a trained run: curves, confusion, mistakes, and the network reading.

Needs matplotlib; nothing here is imported by training or ``import seqmnist``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqmnist.errors import ConfigError
from seqmnist.files import check_writable_folder
from seqmnist.model.inputs import to_unit_float
from seqmnist.plots.curves import curves_figure, read_metrics
from seqmnist.plots.digits import confusion_figure, misclassified_figure
from seqmnist.plots.figures import save_png
from seqmnist.plots.steps import steps_figure
from seqmnist.runs import load_run, run_split
from seqmnist.use.explain import explain
from seqmnist.use.predict import softmax_in_batches

__all__ = ["steps_figure", "write_run_plots"]

# steps.png shows this many test digits, one of each class, unless told otherwise.
EXAMPLES = 4


def write_run_plots(
    run_dir: Path | str,
    out_dir: Path | str | None = None,
    *,
    data_dir: str | None = None,
    examples: int | None = None,
) -> list[Path]:
    """Write curves.png, confusion.png, misclassified.png and steps.png; return their paths.

    ``out_dir`` defaults to RUN/plots. The test-set pictures need the run's dataset.
    steps.png shows the first test digit of each of ``examples`` classes (default:
    EXAMPLES, or every class if the run has fewer). A bad ``examples`` or an
    ``out_dir`` that cannot be written is an error before any slow work.
    """
    run = load_run(run_dir)
    classes = run.info.num_classes
    examples = _check_examples(examples, classes)
    out = Path(out_dir) if out_dir is not None else run.directory / "plots"
    check_writable_folder(out, "--out")
    name = run.directory.name
    # Every figure is drawn before any is saved: a failure on the way (a missing
    # dataset) leaves no partial set of pictures behind.
    figures = {"curves.png": curves_figure(read_metrics(run.directory), name)}
    test = run_split(run, "test", data_dir)
    images, labels = test.images, test.labels
    pixels = to_unit_float(torch.from_numpy(images))  # (N, H, W) in [0, 1]
    probabilities = softmax_in_batches(run.model, pixels, run.config.train.eval_batch_size).numpy()
    predicted = probabilities.argmax(axis=1)  # (N,)
    confusion = np.bincount(labels * classes + predicted, minlength=classes**2)
    confusion = confusion.reshape(classes, classes)  # (true, predicted)
    accuracy = float(np.trace(confusion) / len(labels))
    title = f"{name}: test accuracy {accuracy:.2%} ({len(labels) - np.trace(confusion)} wrong)"
    names = run.info.class_names
    figures["confusion.png"] = confusion_figure(confusion.tolist(), names, title)
    mistakes_title = f"{name}: the most confident mistakes (predicted, true)"
    figures["misclassified.png"] = misclassified_figure(
        images, labels, probabilities, names, mistakes_title
    )
    chosen = _one_per_class(labels, examples)
    explanations = explain(run.model, pixels[chosen].numpy(), [f"test #{i}" for i in chosen], names)
    titles = [f"test image {i} (true {names[labels[i]]})" for i in chosen]
    figures["steps.png"] = steps_figure(explanations, titles)
    return [save_png(figure, out / file_name, "--out") for file_name, figure in figures.items()]


def _check_examples(examples: int | None, classes: int) -> int:
    if examples is None:
        return min(EXAMPLES, classes)
    if not 1 <= examples <= classes:
        raise ConfigError(
            f"--examples must be between 1 and {classes}, the run's number of classes "
            f"(steps.png shows one test digit of each), got {examples}"
        )
    return examples


def _one_per_class(labels: np.ndarray, count: int) -> list[int]:
    """The first test image of each of the first ``count`` classes met, in test order."""
    chosen, seen = [], set()
    for index, label in enumerate(labels.tolist()):
        if label not in seen:
            chosen.append(index)
            seen.add(label)
        if len(chosen) == count:
            break
    return chosen
