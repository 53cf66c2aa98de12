"""Runs side by side: the configuration fields that differ, accuracy, time, size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqmnist.errors import RunError
from seqmnist.model import count_parameters
from seqmnist.runs import SUMMARY_FILE, load_run

# Summary entries shown for every run, in this order.
RESULTS = ("test_accuracy", "val_accuracy", "test_loss", "train_seconds", "samples_per_second")


@dataclass(frozen=True)
class Comparison:
    runs: tuple[str, ...]  # run directories, as given
    differences: dict[str, tuple[Any, ...]]  # "section.field" -> one value per run
    results: dict[str, tuple[Any, ...]]  # summary entry or "params" -> one value per run

    def to_dict(self) -> dict:
        return {
            "runs": list(self.runs),
            "differences": {key: list(values) for key, values in self.differences.items()},
            "results": {key: list(values) for key, values in self.results.items()},
        }


def compare_runs(run_dirs: Sequence[Path | str]) -> Comparison:
    """Load each run (checking its files agree) and line them up."""
    if len(run_dirs) < 1:
        raise RunError("give at least one run directory to compare")
    runs = [load_run(run_dir) for run_dir in run_dirs]
    configs = [_flatten(run.config.to_dict()) for run in runs]
    keys = list(dict.fromkeys(key for config in configs for key in config))
    differences = {
        key: tuple(config.get(key) for config in configs)
        for key in keys
        if len({json.dumps(config.get(key)) for config in configs}) > 1
    }
    summaries = [run.summary or {} for run in runs]
    results = {
        key: tuple(
            _number(summary, key, run.directory)
            for summary, run in zip(summaries, runs, strict=True)
        )
        for key in RESULTS
    }
    # Counted from the weights, so a run without a summary still has it.
    results["params"] = tuple(count_parameters(run.model) for run in runs)
    return Comparison(tuple(str(run_dir) for run_dir in run_dirs), differences, results)


def _number(summary: dict[str, Any], key: str, run_dir: Path) -> float | None:
    """A summary figure, or None where the run has none; anything else is a damaged summary."""
    value = summary.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise RunError(
            f"{run_dir / SUMMARY_FILE} is damaged: {key} is {value!r}, not a number; "
            "train the run again, or compare without it"
        )
    return value


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
