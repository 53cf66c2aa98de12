"""Loss and accuracy per epoch, training and validation, from a run's metrics.jsonl."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from seqmnist.errors import RunError
from seqmnist.metrics import read_records
from seqmnist.plots.figures import new_figure
from seqmnist.runs import METRICS_FILE

TRAIN_COLOR, VALIDATION_COLOR = "tab:blue", "tab:orange"


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of metrics.jsonl; a line cut short (an interrupted run) ends the list."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        raise RunError(f"{path} is missing; is {run_dir} a seqmnist run directory?")
    return [record for record in read_records(path) if "epoch" in record]


def curves_figure(records: list[dict], title: str) -> Figure:
    """Two panels, loss and accuracy against epochs.

    Validation is measured at each epoch end. Training loss per epoch is the
    trainer's mean over the epoch; training accuracy per epoch is the mean of
    the logged batches (every log_every steps), drawn faintly batch by batch too.
    """
    batches = [record for record in records if record["kind"] == "batch"]
    epochs = [record for record in records if record["kind"] == "epoch"]
    if not epochs and not batches:
        raise RunError("metrics.jsonl holds no records yet; nothing to plot")
    figure = new_figure(8.0, 3.2)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    _faint(loss_axes, batches, "loss")
    _line(loss_axes, epochs, "train_loss", TRAIN_COLOR, "train")
    _line(loss_axes, epochs, "val_loss", VALIDATION_COLOR, "validation")
    loss_axes.set_yscale("log")
    loss_axes.set_ylabel("cross-entropy loss")
    _faint(accuracy_axes, batches, "accuracy")
    _line(accuracy_axes, _batch_accuracy_per_epoch(batches), "accuracy", TRAIN_COLOR,
          "train (mean of logged batches)")  # fmt: skip
    _line(accuracy_axes, epochs, "val_accuracy", VALIDATION_COLOR, "validation")
    accuracy_axes.set_ylabel("accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def _faint(axes, batches: list[dict], key: str) -> None:
    if batches:
        axes.plot([r["epoch"] for r in batches], [r[key] for r in batches],
                  color=TRAIN_COLOR, alpha=0.25, linewidth=0.8, label="train, logged batches")  # fmt: skip


def _line(axes, records: list[dict], key: str, color: str, label: str) -> None:
    if records:
        axes.plot([r["epoch"] for r in records], [r[key] for r in records],
                  color=color, marker="o", markersize=4, label=label)  # fmt: skip


def _batch_accuracy_per_epoch(batches: list[dict]) -> list[dict]:
    """Mean logged batch accuracy of each epoch, placed at the epoch's end."""
    by_epoch: dict[int, list[float]] = defaultdict(list)
    for record in batches:
        # A record at exactly epoch k closes epoch k (steps are counted after the update).
        by_epoch[int(np.ceil(record["epoch"]))].append(record["accuracy"])
    return [
        {"epoch": epoch, "accuracy": float(np.mean(values))}
        for epoch, values in sorted(by_epoch.items())
    ]
