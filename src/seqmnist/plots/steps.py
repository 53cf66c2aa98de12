"""The per-step picture: the digit beside the class probabilities after each step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from seqmnist.plots.figures import DIGIT_COLORMAP, DPI, PROBABILITY_COLORMAP
from seqmnist.use.explain import Explanation


def steps_figure(
    explanations: Sequence[Explanation], titles: Sequence[str] | None = None
) -> Figure:
    """One row per image: the input, then a heatmap of probabilities over the steps read.

    The heatmap is as tall as the image; for the rows view its rows line up
    with the image's rows, so the answer after each row sits beside that row.
    """
    titles = titles or [explanation.source for explanation in explanations]
    height, width = explanations[0].image.shape
    # Laid out by hand, in inches, so image and heatmap share one height exactly.
    panel, heat_width, top, gap_below = 2.0, 3.0, 0.75, 0.8
    image_width = panel * width / height
    left, middle, right = 0.2, 0.75, 1.0
    figure_width = left + image_width + middle + heat_width + right
    figure_height = top + len(explanations) * (panel + gap_below)
    figure = Figure(figsize=(figure_width, figure_height), dpi=DPI)
    for row, (explanation, title) in enumerate(zip(explanations, titles, strict=True)):
        bottom = figure_height - top - (row + 1) * panel - row * gap_below
        image_axes = figure.add_axes(_rect(left, bottom, image_width, panel, figure))
        image_axes.imshow(explanation.image, cmap=DIGIT_COLORMAP, vmin=0, vmax=1, aspect="auto")
        image_axes.set_title(_shorten(title), fontsize=9)
        image_axes.set_xticks([])
        image_axes.set_yticks([])
        heat_axes = figure.add_axes(
            _rect(left + image_width + middle, bottom, heat_width, panel, figure)
        )
        mesh = _heatmap(heat_axes, explanation)
    colorbar_axes = figure.add_axes(
        _rect(figure_width - right + 0.2, gap_below, 0.12, figure_height - top - gap_below, figure)
    )
    figure.colorbar(mesh, cax=colorbar_axes, label="probability")
    figure.suptitle(_caption(explanations[0]), fontsize=9, y=1 - 0.12 / figure_height)
    return figure


def _rect(left: float, bottom: float, width: float, height: float, figure: Figure) -> list[float]:
    """Inches to the figure fractions add_axes takes."""
    figure_width, figure_height = figure.get_size_inches()
    return [
        left / figure_width,
        bottom / figure_height,
        width / figure_width,
        height / figure_height,
    ]


def _heatmap(axes, explanation: Explanation):
    probabilities = explanation.probabilities  # (S, C)
    steps = np.asarray(explanation.steps)
    classes = np.arange(len(explanation.class_names))
    settled = explanation.first_settled_step()
    axes.set_title(
        f"reads {explanation.final_label}; settled after {explanation.step_name} {settled}",
        fontsize=9,
    )
    # The cell of step s spans (previous step shown, s] on a 'steps read' axis; for the
    # rows view 0..H spans the same height as the image beside it, row for row.
    edges = np.concatenate(([0], steps))
    class_edges = np.arange(len(classes) + 1) - 0.5
    labels = [name[:8] for name in explanation.class_names]
    if explanation.view == "rows":
        # Time runs down, as the image is read.
        mesh = axes.pcolormesh(
            class_edges, edges, probabilities, cmap=PROBABILITY_COLORMAP, vmin=0, vmax=1
        )
        axes.invert_yaxis()
        axes.set_xticks(
            classes, labels, fontsize=7, rotation=90 if max(map(len, labels)) > 2 else 0
        )
        axes.set_ylabel(f"{explanation.step_name}s read", fontsize=8)
        axes.set_xlabel("class", fontsize=8)
    else:
        mesh = axes.pcolormesh(
            edges, class_edges, probabilities.T, cmap=PROBABILITY_COLORMAP, vmin=0, vmax=1
        )
        axes.set_yticks(classes, labels, fontsize=7)
        axes.set_xlabel(f"{explanation.step_name}s read", fontsize=8)
        axes.set_ylabel("class", fontsize=8)
    axes.tick_params(labelsize=7)
    return mesh


def _caption(explanation: Explanation) -> str:
    caption = f"class probabilities had the image ended after each {explanation.step_name}"
    if explanation.bidirectional:
        caption += " (both directions rerun on each prefix)"
    return caption


def _shorten(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]
