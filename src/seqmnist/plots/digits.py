"""Test-set pictures: the confusion matrix and the misclassified digits."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from seqmnist.plots.figures import DIGIT_COLORMAP, new_figure


def confusion_figure(
    confusion: list[list[int]], class_names: tuple[str, ...], title: str
) -> Figure:
    """Counts by true class (rows) and predicted class (columns), on a log colour scale
    so the rare mistakes stay visible beside the diagonal."""
    counts = np.asarray(confusion)
    size = len(class_names)
    figure = new_figure(1.6 + 0.45 * size, 1.2 + 0.42 * size)
    axes = figure.subplots()
    shown = np.ma.masked_equal(counts, 0)
    image = axes.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(counts.max(), 2)))
    for true, row in enumerate(counts):
        for predicted, count in enumerate(row):
            if count:
                light = count > np.sqrt(counts.max())  # dark cell: white text
                axes.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                          color="white" if light else "black")  # fmt: skip
    labels = [name[:8] for name in class_names]
    axes.set_xticks(
        range(size), labels, fontsize=8, rotation=90 if max(map(len, labels)) > 2 else 0
    )
    axes.set_yticks(range(size), labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, ax=axes, label="images (log scale)", shrink=0.8)
    return figure


def misclassified_figure(
    images: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_names: tuple[str, ...],
    title: str,
    count: int = 32,
    columns: int = 8,
) -> Figure:
    """The ``count`` most confident mistakes: uint8 or float ``images`` (N, H, W), labels (N,),
    probabilities (N, classes)."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    chosen = wrong[np.argsort(-probabilities[wrong, predicted[wrong]], kind="stable")][:count]
    rows = max(1, -(-len(chosen) // columns))
    figure = new_figure(1.05 * columns, 1.25 * rows + 0.4)
    axes = figure.subplots(rows, columns, squeeze=False)
    for slot, cell in enumerate(axes.flat):
        cell.set_axis_off()
        if slot < len(chosen):
            index = chosen[slot]
            cell.imshow(images[index], cmap=DIGIT_COLORMAP)
            guess = predicted[index]
            cell.set_title(
                f"{class_names[guess][:6]} ({probabilities[index, guess]:.0%})\n"
                f"true {class_names[labels[index]][:6]}",
                fontsize=7,
            )
    if not len(chosen):
        axes[0, columns // 2].text(0.5, 0.5, f"no mistakes on these {len(labels)} images",
                                   ha="center", va="center", fontsize=10)  # fmt: skip
    figure.suptitle(title, fontsize=10)
    return figure
