"""Run the benchmark's parts in one process, on one runtime, and gather one result object."""

from __future__ import annotations

import platform
import statistics
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
from seqmnist.presets import get_preset, load_recipe
from seqmnist.runtime import Runtime
from seqmnist.version import package_version


def run_benchmark(
    preset: str = "ref2-lstm128",
    *,
    steps: int | None = None,
    to_accuracy: bool = False,
    accuracy_presets: tuple[str, ...] = ("default",),
    accuracy_seeds: tuple[int, ...] | None = None,
    accuracy_steps: int | None = None,
    eval_every: int = 50,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure throughput (and optionally time to accuracy); returns a JSON-ready dict.

    ``overrides`` apply to ``preset``; the ``--to-accuracy`` runs take only its
    data and runtime settings and otherwise keep their own recipes. Each of
    ``accuracy_presets`` is a preset or a config file; the first is also trained
    by the baseline loop. With more than one recipe or seed, every recipe is
    trained on every seed, taken in turns, and compared (``recipes``).
    """
    # What a fresh `seqmnist train` spends before its first step: starting the
    # process and importing, then the runtime and the data, then train()'s own setup.
    startup_seconds = process_age()
    config = apply_overrides(get_preset(preset), {**(overrides or {}), **_budget(steps)})
    check_mirrors(config.model)
    recipes: list[RunConfig] = []
    if to_accuracy:  # built now, so a bad recipe fails before anything is measured
        shared = {**_shared_overrides(config), **_budget(accuracy_steps)}
        recipes = [apply_overrides(load_recipe(name), shared) for name in accuracy_presets]
        check_mirrors(recipes[0].model)  # the one the baseline trains too
        # Every seed each recipe trains with (without seeds given: its own), checked now too.
        runs = [
            [apply_overrides(recipe, {"seed": seed}) for recipe in recipes]
            for seed in accuracy_seeds
        ] if accuracy_seeds else [recipes]  # fmt: skip
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
    if recipes:
        if recipes[0].data != config.data:
            splits = _load(recipes[0])
        first = runs[0][0]
        ours = measure_time_to_accuracy(first, splits, runtime, eval_every)
        result.update(_time_to_accuracy(
            accuracy_presets[0], first, ours, splits, runtime, eval_every, startup_seconds
        ))  # fmt: skip
        if len(recipes) > 1 or len(runs) > 1:
            result["recipes"] = _compare_recipes(
                accuracy_presets, runs, ours, splits, runtime, eval_every
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
    name: str, config: RunConfig, ours: TimeToAccuracy, splits: ImageSplits, runtime: Runtime,
    eval_every: int, startup_seconds: float | None,
) -> dict[str, Any]:  # fmt: skip
    # One after the other in this process, seqmnist first: train() owns its loop, so the
    # two cannot alternate timed windows as the throughput measurement does. Compare
    # figures from one run on an otherwise quiet machine.
    baseline = measure_baseline_time_to_accuracy(config, splits, runtime, eval_every)
    to_98_5, to_99_0 = (ours.seconds_to[target] for target in (0.985, 0.990))
    base_98_5, base_99_0 = (baseline.seconds_to[target] for target in (0.985, 0.990))
    before = None if startup_seconds is None else startup_seconds + ours.setup_seconds

    def from_start(seconds: float | None) -> float | None:
        return None if seconds is None or before is None else before + seconds

    return {
        "accuracy_preset": name,
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


def _compare_recipes(
    names: tuple[str, ...], runs: list[list[RunConfig]], first: TimeToAccuracy,
    splits: ImageSplits, runtime: Runtime, eval_every: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Every recipe on every seed, the recipes in turns within a seed (so a machine's
    drift falls on all of them alike); the first run was measured already."""
    measured: list[list[TimeToAccuracy]] = [[] for _ in names]
    for seed_index, configs in enumerate(runs):
        for index, config in enumerate(configs):
            done = seed_index == 0 and index == 0
            measured[index].append(
                first if done else measure_time_to_accuracy(config, splits, runtime, eval_every)
            )
    summaries = [
        _recipe_summary(name, configs, results)
        for name, configs, results in zip(names, zip(*runs), measured)
    ]
    reference = summaries[0]["train_seconds_mean"]
    for summary in summaries:
        # Under 1: this recipe trains in less time than the first one named.
        summary["train_seconds_vs_first"] = summary["train_seconds_mean"] / reference
    return summaries


def _recipe_summary(
    name: str, configs: tuple[RunConfig, ...], results: list[TimeToAccuracy]
) -> dict[str, Any]:
    accuracies = [result.final_test_accuracy for result in results]
    seconds = [result.train_seconds for result in results]
    to_99 = [result.seconds_to[0.990] for result in results]
    reached = [value for value in to_99 if value is not None]
    return {
        "recipe": name,
        "seeds": [config.train.seed for config in configs],
        "steps": results[0].steps,
        "test_accuracy": accuracies,
        "test_accuracy_mean": statistics.fmean(accuracies),
        "test_accuracy_min": min(accuracies),
        "train_seconds": seconds,
        "train_seconds_mean": statistics.fmean(seconds),
        "seconds_to_99_0": to_99,
        # Over the seeds that got there; how many did is beside it.
        "seconds_to_99_0_mean": statistics.fmean(reached) if reached else None,
        "reached_99_0": len(reached),
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
