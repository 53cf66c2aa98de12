"""Time to accuracy: how long seqmnist's trainer and the baseline take to reach 98.5% and 99.0%.

Both train the same recipe on the same data and runtime, and both are
checked the same way: full test accuracy by the one fp32 evaluation loop,
every ``eval_every`` steps and at the last step, with the time spent
checking left out of both clocks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import torch

from seqmnist.bench.baseline import BaselineTrainer
from seqmnist.bench.throughput import full_test_accuracy
from seqmnist.bench.timing import synchronize
from seqmnist.config import RunConfig
from seqmnist.data import ImageSplits
from seqmnist.errors import NonFiniteOutputs
from seqmnist.evaluation import DeviceSplit
from seqmnist.runs import ModelInfo, build_model
from seqmnist.runtime import Runtime
from seqmnist.training import train
from seqmnist.training.progress import Record

logger = logging.getLogger("seqmnist.bench")

TARGETS = (0.985, 0.990)


@dataclass
class AccuracyCurve:
    """Test accuracy at the checked steps of one run, and when each target was first met."""

    model: torch.nn.Module
    test: DeviceSplit
    num_classes: int
    batch_size: int
    every: int
    total_steps: int
    seconds_to: dict[float, float | None] = field(default_factory=lambda: dict.fromkeys(TARGETS))
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (step, seconds, acc)

    def due(self, step: int) -> bool:
        """Every ``every`` steps and at the budget's end, once each."""
        scheduled = step % self.every == 0 or step == self.total_steps
        return scheduled and not (self.points and self.points[-1][0] == step)

    def check(self, step: int, seconds: float) -> float:
        accuracy = full_test_accuracy(self.model, self.test, self.num_classes, self.batch_size)
        self.points.append((step, seconds, accuracy))
        for target, reached in self.seconds_to.items():
            if reached is None and accuracy >= target:
                self.seconds_to[target] = seconds
        return accuracy

    def __call__(self, record: Record) -> None:
        """As a train() callback: its ``elapsed`` already leaves out the time spent in callbacks.

        Batch records come every ``log_every`` (= ``every``) steps; of the epoch
        records only the one at the budget's end is due, so both runs are
        checked at the same steps.
        """
        if self.due(record["step"]):
            self.check(record["step"], record["elapsed"])


@dataclass(frozen=True)
class TimeToAccuracy:
    seconds_to: dict[float, float | None]  # training seconds from the first step
    steps: int
    train_seconds: float  # the whole budget, checks left out
    final_test_accuracy: float | None  # seqmnist: best-validation weights; baseline: last step
    curve: list[tuple[int, float, float]]  # (step, seconds, test accuracy)
    setup_seconds: float  # called to the first step (model, data to the device)


def measure_time_to_accuracy(
    config: RunConfig, splits: ImageSplits, runtime: Runtime, eval_every: int
) -> TimeToAccuracy:
    """Train ``config`` once with seqmnist's trainer, checking test accuracy as it goes."""
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, info).to(runtime.device)
    curve = _curve(model, config, splits, runtime, eval_every)
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, log_every=eval_every)
    )
    result = train(
        config, splits=splits, model=model, progress=False, callbacks=(curve,), runtime=runtime
    )
    return TimeToAccuracy(
        dict(curve.seconds_to), result.summary["steps"], result.summary["train_seconds"],
        result.test.accuracy, curve.points, result.summary["setup_seconds"],
    )  # fmt: skip


def measure_baseline_time_to_accuracy(
    config: RunConfig, splits: ImageSplits, runtime: Runtime, eval_every: int
) -> TimeToAccuracy:
    """Train the baseline on ``config``'s recipe, checking test accuracy at the same steps."""
    called = time.perf_counter()
    device = runtime.device
    total_steps = config.train.total_steps(len(splits.train_labels))
    trainer = BaselineTrainer(
        config, splits.train_images, splits.train_labels, splits.num_classes, device, total_steps
    )
    curve = _curve(trainer.model, config, splits, runtime, eval_every)
    trainer.model.train()
    synchronize(device)
    setup_seconds = time.perf_counter() - called
    seconds = 0.0
    started = time.perf_counter()
    for step in range(1, total_steps + 1):
        trainer.step()
        if not curve.due(step):
            continue
        synchronize(device)  # the clock stops once the device has finished the steps
        seconds += time.perf_counter() - started
        try:
            accuracy = curve.check(step, seconds)
        except NonFiniteOutputs:
            # A plain loop has no divergence guard: a baseline that blew up reaches nothing.
            logger.warning(
                "baseline diverged by step %d; its remaining targets are unreached", step
            )
            break
        logger.info("baseline step %d: test accuracy %.4f after %.1f s", step, accuracy, seconds)
        started = time.perf_counter()
    final = curve.points[-1][2] if curve.points and curve.points[-1][0] == total_steps else None
    return TimeToAccuracy(
        dict(curve.seconds_to), total_steps, seconds, final, curve.points, setup_seconds
    )


def _curve(
    model: torch.nn.Module, config: RunConfig, splits: ImageSplits, runtime: Runtime,
    eval_every: int,
) -> AccuracyCurve:  # fmt: skip
    return AccuracyCurve(
        model, DeviceSplit.from_arrays(splits.test_images, splits.test_labels, runtime.device),
        splits.num_classes, config.train.eval_batch_size, eval_every,
        config.train.total_steps(len(splits.train_labels)),
    )  # fmt: skip
