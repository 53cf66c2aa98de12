"""Run the benchmark's parts in one process and gather one result object."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from seqmnist.bench.throughput import measure_inference, measure_training
from seqmnist.bench.timing import process_age
from seqmnist.bench.to_accuracy import measure_time_to_accuracy
from seqmnist.config import RunConfig, apply_overrides
from seqmnist.data import ImageSplits, load_dataset
from seqmnist.device import resolve_device, resolve_precision
from seqmnist.presets import get_preset
from seqmnist.training.trainer import DeviceSplit


def run_benchmark(
    preset: str = "ref2-lstm128",
    *,
    steps: int | None = None,
    to_accuracy: bool = False,
    accuracy_preset: str = "default",
    accuracy_steps: int | None = None,
    eval_every: int = 50,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure throughput (and optionally time to accuracy); returns a JSON-ready dict."""
    # What a fresh `seqmnist train` spends before its first step: starting the
    # process and importing, then loading the data, then train()'s own setup.
    startup_seconds = process_age()
    config = apply_overrides(get_preset(preset), overrides or {})
    device = resolve_device(config.train.device)
    loading = time.perf_counter()
    splits = load_dataset(config.data.dataset, config.data.data_dir, config.data.validation_size)
    if startup_seconds is not None:
        startup_seconds += time.perf_counter() - loading
    steps = steps or config.train.total_steps(len(splits.train_labels))
    speed, model = measure_training(config, splits, device, steps)
    precision = resolve_precision(config.train.precision, device)
    test = DeviceSplit.from_arrays(splits.test_images, splits.test_labels, device)
    inference = measure_inference(model, test.images, precision)
    result: dict[str, Any] = {
        "preset": preset,
        "batch_size": config.train.batch_size,
        "steps": steps,
        "precision": precision,
        "train_samples_per_second": speed.samples_per_second,
        "baseline_train_samples_per_second": speed.baseline_samples_per_second,
        "train_speedup": speed.speedup,
        "train_test_accuracy": speed.test_accuracy,
        "baseline_test_accuracy": speed.baseline_test_accuracy,
        "infer_samples_per_second": inference.samples_per_second,
        "latency_p50_ms": inference.latency_p50_ms,
        "latency_p99_ms": inference.latency_p99_ms,
        **machine(device),
    }
    if to_accuracy:
        accuracy_overrides = _data_overrides(config)
        if accuracy_steps is not None:
            accuracy_overrides["steps"] = accuracy_steps
        accuracy_config = apply_overrides(get_preset(accuracy_preset), accuracy_overrides)
        if accuracy_config.data != config.data:
            splits = load_dataset(
                accuracy_config.data.dataset, accuracy_config.data.data_dir,
                accuracy_config.data.validation_size,
            )  # fmt: skip
        result.update(
            _time_to_accuracy(accuracy_config, splits, accuracy_preset, eval_every, startup_seconds)
        )
    return result


def _data_overrides(config: RunConfig) -> dict[str, Any]:
    return {
        "dataset": config.data.dataset,
        "data_dir": config.data.data_dir,
        "device": config.train.device,
    }


def _time_to_accuracy(
    config: RunConfig, splits: ImageSplits, preset: str, eval_every: int,
    startup_seconds: float | None,
) -> dict[str, Any]:  # fmt: skip
    measured = measure_time_to_accuracy(config, splits, eval_every)
    to_98_5, to_99_0 = (measured.seconds_to[target] for target in (0.985, 0.990))
    before = None if startup_seconds is None else startup_seconds + measured.setup_seconds

    def from_start(seconds: float | None) -> float | None:
        return None if seconds is None or before is None else before + seconds

    return {
        "accuracy_preset": preset,
        "seconds_to_98_5": to_98_5,
        "seconds_to_99_0": to_99_0,
        "seconds_to_98_5_from_process_start": from_start(to_98_5),
        "seconds_to_99_0_from_process_start": from_start(to_99_0),
        "test_accuracy": measured.test_accuracy,
        "accuracy_train_seconds": measured.train_seconds,
        "accuracy_curve": [
            {"step": step, "seconds": seconds, "test_accuracy": accuracy}
            for step, seconds, accuracy in measured.curve
        ],
    }


def machine(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
