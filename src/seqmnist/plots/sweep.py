"""A sweep's configurations side by side: accuracy as mean ± std over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqmnist.errors import ConfigError
from seqmnist.plots.figures import new_figure, save_png


def sweep_figure(rows: list[dict[str, Any]], path: Path) -> Path:
    """Validation and test accuracy per configuration, best at the top; error bars are std."""
    rows = [row for row in rows if row["seeds"]]
    if not rows:
        raise ConfigError("the sweep has no finished trial yet; nothing to plot")
    figure = new_figure(8.0, 1.2 + 0.4 * len(rows))
    axes = figure.subplots()
    positions = list(range(len(rows)))[::-1]  # the best row on top
    for offset, name, hatch in ((0.18, "val_accuracy", ""), (-0.18, "test_accuracy", "//")):
        means = [100 * (row[f"{name}_mean"] or 0) for row in rows]
        errors = [100 * (row[f"{name}_std"] or 0) for row in rows]
        axes.barh([p + offset for p in positions], means, height=0.34, xerr=errors, capsize=3,
                  color="white", edgecolor="black", hatch=hatch,
                  label=name.replace("_", " "))  # fmt: skip
    labels = [f"{row['configuration']} ({row['seeds']} seeds)" for row in rows]
    axes.set_yticks(positions, labels)
    lowest = min(100 * row[f"{name}_mean"] for row in rows for name in ("val_accuracy", "test_accuracy")
                 if row[f"{name}_mean"] is not None)  # fmt: skip
    axes.set_xlim(max(0.0, lowest - 2), 100)
    axes.set_xlabel("accuracy, % (mean ± std over seeds)")
    axes.legend(loc="lower right")
    return save_png(figure, path, "DIR")
