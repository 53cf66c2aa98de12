"""Matplotlib figures without pyplot: no global state, no display needed."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from seqmnist.files import atomic_write

DPI = 100
# Dark ink on white, as a digit is drawn on paper; the model itself sees it inverted.
DIGIT_COLORMAP = "gray_r"
PROBABILITY_COLORMAP = "viridis"


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_png(figure: Figure, path: Path) -> Path:
    """Write ``figure`` as a PNG, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: figure.savefig(temp, format="png", dpi=DPI))
    return path
