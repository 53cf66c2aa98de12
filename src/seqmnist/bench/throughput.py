"""Training and inference throughput of seqmnist's trainer, side by side with the baseline."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqmnist.bench.baseline import BaselineTrainer
from seqmnist.bench.timing import median, percentile, timed
from seqmnist.config import RunConfig
from seqmnist.data import ImageSplits
from seqmnist.evaluation import DeviceSplit, evaluate
from seqmnist.model.inputs import to_unit_float
from seqmnist.runs import ModelInfo, build_model
from seqmnist.runtime import Runtime
from seqmnist.training.optim import build_optimizer, build_schedule
from seqmnist.training.step import TrainStep


@dataclass(frozen=True)
class TrainingSpeed:
    samples_per_second: float
    baseline_samples_per_second: float
    steps: int
    test_accuracy: float
    baseline_test_accuracy: float

    @property
    def speedup(self) -> float:
        return self.samples_per_second / self.baseline_samples_per_second


def measure_training(
    config: RunConfig, splits: ImageSplits, runtime: Runtime,
    window_steps: int = 25, warmup_steps: int = 10,
) -> tuple[TrainingSpeed, torch.nn.Module]:  # fmt: skip
    """Train seqmnist's model and the baseline for the budget each, alternating timed windows.

    Alternating puts both under the same machine load; the result is the
    median samples/s over windows after warm-up, and each model's full test
    accuracy (fp32) when done. seqmnist trains in the runtime's precision,
    the baseline in fp32, as a plain loop does.
    """
    device = runtime.device
    steps = config.train.total_steps(len(splits.train_labels))
    torch.manual_seed(config.train.seed)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    train_split = DeviceSplit.from_arrays(splits.train_images, splits.train_labels, device)
    model = build_model(config.model, info).to(device)
    optimizer = build_optimizer(model, config.train, device)
    schedule = build_schedule(optimizer, config.train, steps)
    step = TrainStep(model, optimizer, schedule, config.train, runtime)
    batch_size = config.train.batch_size
    generator = torch.Generator().manual_seed(config.train.seed)
    order = torch.randperm(len(train_split), generator=generator).to(device)
    position = 0

    def ours(count: int) -> None:
        nonlocal order, position
        for _ in range(count):
            if position + batch_size > len(order):
                order = torch.randperm(len(train_split), generator=generator).to(device)
                position = 0
            indices = order[position : position + batch_size]
            position += batch_size
            step(train_split.images[indices], train_split.labels[indices])

    baseline = BaselineTrainer(
        config, splits.train_images, splits.train_labels, info.num_classes, device, steps
    )

    def theirs(count: int) -> None:
        for _ in range(count):
            baseline.step()

    warmup = min(warmup_steps, steps)
    ours(warmup)
    theirs(warmup)
    our_rates, their_rates = [], []
    done = warmup
    while done < steps:
        count = min(window_steps, steps - done)
        our_rates.append(count * batch_size / timed(device, lambda n=count: ours(n)))
        their_rates.append(count * batch_size / timed(device, lambda n=count: theirs(n)))
        done += count
    test = DeviceSplit.from_arrays(splits.test_images, splits.test_labels, device)
    accuracy, baseline_accuracy = (
        full_test_accuracy(trained, test, info.num_classes, config.train.eval_batch_size)
        for trained in (model, baseline.model)
    )
    speed = TrainingSpeed(
        median(our_rates) if our_rates else float("nan"),
        median(their_rates) if their_rates else float("nan"),
        steps, accuracy, baseline_accuracy,
    )  # fmt: skip
    return speed, model


def full_test_accuracy(
    model: torch.nn.Module, test: DeviceSplit, num_classes: int, batch_size: int
) -> float:
    """Full test accuracy by the one (fp32) evaluation loop."""
    return evaluate(
        model, test.images, test.labels, split="test", num_classes=num_classes,
        batch_size=batch_size,
    ).accuracy  # fmt: skip


@dataclass(frozen=True)
class InferenceSpeed:
    samples_per_second: float  # at batch 1000
    latency_p50_ms: float  # batch 1
    latency_p99_ms: float


@torch.inference_mode()
def measure_inference(
    model: torch.nn.Module, images: torch.Tensor, runtime: Runtime,
    batch_size: int = 1000, batches: int = 10, single_calls: int = 200,
) -> InferenceSpeed:  # fmt: skip
    """Throughput at ``batch_size`` and single-image latency on uint8 ``images`` on the device.

    Forward passes run under the runtime's autocast: the speed a user gets
    from a model run in that precision.
    """
    model.eval()
    device = runtime.device

    def predict(batch: torch.Tensor) -> None:
        with runtime.autocast():
            model(to_unit_float(batch))

    batch = images[:batch_size]
    predict(batch)  # warm-up
    rates = [len(batch) / timed(device, lambda: predict(batch)) for _ in range(batches)]
    for index in range(10):
        predict(images[index : index + 1])
    latencies = [
        1000 * timed(device, lambda i=index: predict(images[i : i + 1]))
        for index in range(single_calls)
    ]
    return InferenceSpeed(median(rates), median(latencies), percentile(latencies, 0.99))
