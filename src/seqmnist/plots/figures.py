"""Matplotlib figures without pyplot: no global state, no display needed."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from seqmnist.files import atomic_write, make_folder

DPI = 100
# Dark ink on white, as a digit is drawn on paper; the model itself sees it inverted.
DIGIT_COLORMAP = "gray_r"
PROBABILITY_COLORMAP = "viridis"


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_png(figure: Figure, path: Path, option: str = "--out") -> Path:
    """Write ``figure`` as a PNG, whole or not at all, creating its folder if need be.

    A place that cannot be written is a StorageError naming ``option``, the
    command-line option that chose it.
    """
    path = Path(path)
    make_folder(path.parent, option)
    atomic_write(path, lambda temp: figure.savefig(temp, format="png", dpi=DPI), option)
    return path
