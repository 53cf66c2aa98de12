"""Time to accuracy: how long the default preset takes to reach 98.5% and 99.0% test accuracy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from seqmnist.config import RunConfig
from seqmnist.data import ImageSplits
from seqmnist.device import resolve_device, resolve_precision
from seqmnist.evaluation import evaluate
from seqmnist.runs import ModelInfo, build_model
from seqmnist.training import train
from seqmnist.training.progress import Record
from seqmnist.training.trainer import DeviceSplit

TARGETS = (0.985, 0.990)


@dataclass
class AccuracyTracker:
    """A training callback that measures test accuracy at every record.

    Its own evaluation time is not counted: the trainer's ``elapsed`` excludes
    time spent in callbacks.
    """

    model: torch.nn.Module
    test: DeviceSplit
    num_classes: int
    precision: str
    batch_size: int
    seconds_to: dict[float, float | None] = field(default_factory=lambda: dict.fromkeys(TARGETS))
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (step, elapsed, accuracy)

    def __call__(self, record: Record) -> None:
        # Batch records come every ``log_every`` steps; the epoch record at the budget's
        # end catches the finished model too.
        if self.curve and self.curve[-1][0] == record["step"]:
            return
        accuracy = evaluate(
            self.model, self.test.images, self.test.labels, split="test",
            num_classes=self.num_classes, batch_size=self.batch_size, precision=self.precision,
        ).accuracy  # fmt: skip
        self.model.train()
        self.curve.append((record["step"], record["elapsed"], accuracy))
        for target, seconds in self.seconds_to.items():
            if seconds is None and accuracy >= target:
                self.seconds_to[target] = record["elapsed"]


@dataclass(frozen=True)
class TimeToAccuracy:
    seconds_to: dict[float, float | None]  # from the first training step
    setup_seconds: float  # train() called to its first step (model, data to device)
    test_accuracy: float  # the trained run's final (best-validation) test accuracy
    train_seconds: float
    curve: list[tuple[int, float, float]]


def measure_time_to_accuracy(
    config: RunConfig, splits: ImageSplits, eval_every: int
) -> TimeToAccuracy:
    """Train ``config`` once, checking full test accuracy every ``eval_every`` steps."""
    device = resolve_device(config.train.device)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, info).to(device)
    tracker = AccuracyTracker(
        model, DeviceSplit.from_arrays(splits.test_images, splits.test_labels, device),
        info.num_classes, resolve_precision(config.train.precision, device),
        config.train.eval_batch_size,
    )  # fmt: skip
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, log_every=eval_every)
    )
    result = train(config, splits=splits, model=model, progress=False, callbacks=(tracker,))
    return TimeToAccuracy(
        dict(tracker.seconds_to), result.summary["setup_seconds"], result.test.accuracy,
        result.summary["train_seconds"], tracker.curve,
    )  # fmt: skip
