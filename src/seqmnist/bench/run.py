"""Run the benchmark's parts in one process, on one runtime, and gather one result object."""

from __future__ import annotations

import platform
import time
from typing import Any

from seqmnist.bench.baseline import check_mirrors
from seqmnist.bench.throughput import measure_inference, measure_training
from seqmnist.bench.timing import process_age
from seqmnist.bench.to_accuracy import (
    TimeToAccuracy,
    measure_baseline_time_to_accuracy,
    measure_time_to_accuracy,
)
from seqmnist.config import RunConfig, apply_overrides
from seqmnist.data import ImageSplits, load_dataset
from seqmnist.evaluation import DeviceSplit
from seqmnist.presets import get_preset
from seqmnist.runtime import Runtime
from seqmnist.version import package_version


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
    """Measure throughput (and optionally time to accuracy); returns a JSON-ready dict.

    ``overrides`` apply to ``preset``; the ``--to-accuracy`` run takes only its
    data and runtime settings and otherwise keeps ``accuracy_preset``'s recipe.
    """
    # What a fresh `seqmnist train` spends before its first step: starting the
    # process and importing, then the runtime and the data, then train()'s own setup.
    startup_seconds = process_age()
    config = apply_overrides(get_preset(preset), {**(overrides or {}), **_budget(steps)})
    check_mirrors(config.model)
    accuracy_config = None
    if to_accuracy:  # built now, so a bad preset fails before anything is measured
        accuracy_config = apply_overrides(
            get_preset(accuracy_preset), {**_shared_overrides(config), **_budget(accuracy_steps)}
        )
        check_mirrors(accuracy_config.model)
    loading = time.perf_counter()
    # Decided once: every measurement below, seqmnist's and the baseline's, runs on it.
    runtime = Runtime.for_training(config.train)
    splits = _load(config)
    if startup_seconds is not None:
        startup_seconds += time.perf_counter() - loading
    speed, model = measure_training(config, splits, runtime)
    test = DeviceSplit.from_arrays(splits.test_images, splits.test_labels, runtime.device)
    inference = measure_inference(model, test.images, runtime)
    result: dict[str, Any] = {
        "preset": preset,
        "batch_size": config.train.batch_size,
        "steps": speed.steps,
        "train_samples_per_second": speed.samples_per_second,
        "baseline_train_samples_per_second": speed.baseline_samples_per_second,
        "train_speedup": speed.speedup,
        "train_test_accuracy": speed.test_accuracy,
        "baseline_test_accuracy": speed.baseline_test_accuracy,
        "infer_samples_per_second": inference.samples_per_second,
        "latency_p50_ms": inference.latency_p50_ms,
        "latency_p99_ms": inference.latency_p99_ms,
        **runtime.to_dict(),
        "python_version": platform.python_version(),
        "seqmnist_version": package_version(),
    }
    if accuracy_config is not None:
        if accuracy_config.data != config.data:
            splits = _load(accuracy_config)
        result.update(
            _time_to_accuracy(accuracy_config, splits, runtime, eval_every, startup_seconds)
        )
    return result


def load_for_bench(overrides: dict[str, Any]) -> tuple[Runtime, ImageSplits]:
    """The runtime and the data that ``overrides`` (data and runtime settings) describe."""
    config = apply_overrides(get_preset("default"), overrides)
    runtime = Runtime.for_training(config.train)
    return runtime, _load(config)


def _budget(steps: int | None) -> dict[str, Any]:
    """A step budget replacing the preset's (the config bounds it), or none."""
    return {} if steps is None else {"steps": steps}


def _shared_overrides(config: RunConfig) -> dict[str, Any]:
    """What the accuracy run takes from the benchmarked config: its data and its runtime."""
    train = config.train
    return {
        "dataset": config.data.dataset,
        "data_dir": config.data.data_dir,
        "validation_size": config.data.validation_size,
        "device": train.device,
        "precision": train.precision,
        "threads": train.threads,
    }


def _load(config: RunConfig) -> ImageSplits:
    data = config.data
    return load_dataset(data.dataset, data.data_dir, data.validation_size)


def _time_to_accuracy(
    config: RunConfig, splits: ImageSplits, runtime: Runtime, eval_every: int,
    startup_seconds: float | None,
) -> dict[str, Any]:  # fmt: skip
    # One after the other in this process, seqmnist first: train() owns its loop, so the
    # two cannot alternate timed windows as the throughput measurement does. Compare
    # figures from one run on an otherwise quiet machine.
    ours = measure_time_to_accuracy(config, splits, runtime, eval_every)
    baseline = measure_baseline_time_to_accuracy(config, splits, runtime, eval_every)
    to_98_5, to_99_0 = (ours.seconds_to[target] for target in (0.985, 0.990))
    base_98_5, base_99_0 = (baseline.seconds_to[target] for target in (0.985, 0.990))
    before = None if startup_seconds is None else startup_seconds + ours.setup_seconds

    def from_start(seconds: float | None) -> float | None:
        return None if seconds is None or before is None else before + seconds

    return {
        "accuracy_preset": config.name,
        "accuracy_steps": ours.steps,
        "eval_every": eval_every,
        "seconds_to_98_5": to_98_5,
        "seconds_to_99_0": to_99_0,
        "seconds_to_98_5_from_process_start": from_start(to_98_5),
        "seconds_to_99_0_from_process_start": from_start(to_99_0),
        "test_accuracy": ours.final_test_accuracy,
        "accuracy_train_seconds": ours.train_seconds,
        "accuracy_curve": _curve(ours),
        "baseline_seconds_to_98_5": base_98_5,
        "baseline_seconds_to_99_0": base_99_0,
        "baseline_final_test_accuracy": baseline.final_test_accuracy,
        "baseline_accuracy_train_seconds": baseline.train_seconds,
        "baseline_accuracy_curve": _curve(baseline),
        # How many times sooner seqmnist reaches the target than the baseline does.
        "speedup_to_98_5": _ratio(base_98_5, to_98_5),
        "speedup_to_99_0": _ratio(base_99_0, to_99_0),
    }


def _curve(measured: TimeToAccuracy) -> list[dict[str, Any]]:
    return [
        {"step": step, "seconds": seconds, "test_accuracy": accuracy}
        for step, seconds, accuracy in measured.curve
    ]


def _ratio(baseline_seconds: float | None, our_seconds: float | None) -> float | None:
    if baseline_seconds is None or our_seconds is None or our_seconds <= 0:
        return None
    return baseline_seconds / our_seconds
