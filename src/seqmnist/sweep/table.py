"""A sweep's results grouped over seeds: the table a paper prints, and its best configuration.

Only finished trials count; a configuration's figures are the mean and the
sample standard deviation over its seeds, with the number of seeds beside
them. A run that a retry finished is counted once. The test accuracy is
reported, never chosen on: rows are ordered by the sweep's metric. A sweep
with a [require] table (say val_accuracy >= 0.99) puts the configurations
whose mean meets it first, then those that miss, each marked.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from seqmnist.config import RunConfig
from seqmnist.errors import ConfigError
from seqmnist.sweep.spec import describe_requirement, shortfalls
from seqmnist.sweep.study import counted, load_study

FIGURES = ("val_accuracy", "test_accuracy", "train_seconds", "samples_per_second")


def sweep_rows(out_dir: Path, storage_url: str | None = None) -> list[dict[str, Any]]:
    """One row per configuration, best first by the sweep's metric."""
    study = load_study(out_dir, storage_url)
    metric = study.user_attrs.get("metric", "val_accuracy")
    require = study.user_attrs.get("require", {})
    groups: dict[str, dict[str, Any]] = {}
    runs: dict[tuple[str, int], Any] = {}
    for trial in counted(study):
        if trial.state == TrialState.WAITING:
            continue  # queued: its values are not yet its own (Optuna keeps them aside)
        key = json.dumps(trial.params, sort_keys=True)
        group = groups.setdefault(key, {"params": trial.params, "pruned": 0, "failed": 0})
        if trial.state == TrialState.COMPLETE:
            runs[(key, trial.user_attrs.get("seed"))] = trial  # a retry's copy replaces none
        elif trial.state == TrialState.PRUNED:
            group["pruned"] += 1
        elif trial.state == TrialState.FAIL:
            group["failed"] += 1
    finished: dict[str, list] = {}
    for (key, _seed), trial in sorted(runs.items(), key=lambda item: str(item[0])):
        finished.setdefault(key, []).append(trial)
    rows = [_row(groups[key], finished.get(key, []), metric, require) for key in groups]
    sign = -1 if study.direction.name == "MAXIMIZE" else 1

    def order(row: dict[str, Any]) -> tuple:
        # Finished and meeting the requirements, best first; then finished but missing;
        # then the rest in trial order.
        if not row["seeds"]:
            return (2, 0)
        return (0 if row["meets"] is not False else 1, sign * row["metric_mean"])

    return sorted(rows, key=order)


def _row(
    group: dict[str, Any], trials: list, metric: str, require: dict[str, float]
) -> dict[str, Any]:
    params = group["params"]
    row: dict[str, Any] = {
        "configuration": ", ".join(
            f"{key.rsplit('.', 1)[-1]}={value}" for key, value in params.items()
        )
        or "(base)",
        "params": params,
        "seeds": len(trials),
        "pruned": group["pruned"],
        "failed": group["failed"],
        "parameters": trials[0].user_attrs.get("params") if trials else None,
        "metric": metric,
        "run_dirs": [trial.user_attrs.get("run_dir") for trial in trials],
        # The first seed's configuration as trained (kept by the worker that trained it).
        "config": trials[0].user_attrs.get("config") if trials else None,
    }
    for name in (*FIGURES, metric):
        values = _figures(trials, name)
        # None, not NaN, where there is no figure: JSON has no NaN.
        row[f"{name}_mean"] = statistics.fmean(values) if values else None
        row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else None
    row["metric_mean"], row["metric_std"] = row[f"{metric}_mean"], row[f"{metric}_std"]
    # Held to the mean over seeds, as the table reports it; None where nothing is required.
    means = {
        name: statistics.fmean(v) if (v := _figures(trials, name)) else None for name in require
    }
    gaps = shortfalls(require, means)
    row["requirements"] = [describe_requirement(name, bound) for name, bound in require.items()]
    row["meets"] = all(gap <= 0 for gap in gaps.values()) if require and trials else None
    return row


def _figures(trials: list, name: str) -> list[float]:
    values = [trial.user_attrs.get(name) for trial in trials]
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("configuration", "seeds", "val accuracy", "test accuracy", "parameters",
              "train s", "samples/s", "pruned", "failed")  # fmt: skip
    required = next((row["requirements"] for row in rows if row["requirements"]), None)
    if required:
        header = (*header, " and ".join(required))
    lines = [header] + [
        (
            row["configuration"],
            str(row["seeds"]),
            _mean_std(row, "val_accuracy", 100, "%"),
            _mean_std(row, "test_accuracy", 100, "%"),
            f"{row['parameters']:,}" if row["parameters"] else "-",
            _mean_std(row, "train_seconds", 1, ""),
            _mean_std(row, "samples_per_second", 1, "", 0),
            str(row["pruned"]),
            str(row["failed"]),
        )  # fmt: skip
        + ((_verdict(row["meets"]),) if required else ())
        for row in rows
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines
    )


def _verdict(meets: bool | None) -> str:
    return {True: "met", False: "missed", None: "-"}[meets]


def _mean_std(row: dict[str, Any], name: str, scale: float, unit: str, digits: int = 2) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if mean is None:
        return "-"
    text = f"{mean * scale:.{digits}f}{unit}"
    return text if std is None else f"{text} ± {std * scale:.{digits}f}"


def format_csv(rows: list[dict[str, Any]]) -> str:
    columns = (
        ["configuration", "seeds", "pruned", "failed", "parameters"]
        + [f"{name}_{part}" for name in FIGURES for part in ("mean", "std")]
        + (["meets"] if any(row["meets"] is not None for row in rows) else [])
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def best_config(out_dir: Path, storage_url: str | None = None) -> tuple[dict[str, Any], RunConfig]:
    """The best configuration with the most seeds finished, as its runs were trained.

    Of a sweep with requirements, only a configuration that meets them can be best.
    """
    rows = [row for row in sweep_rows(out_dir, storage_url) if row["seeds"]]
    if not rows:
        raise ConfigError(f"the sweep in {out_dir} has no finished trial yet")
    if rows[0]["meets"] is False:
        raise ConfigError(
            f"no configuration of the sweep in {out_dir} meets "
            f"{' and '.join(rows[0]['requirements'])} yet; `seqmnist sweep table {out_dir}` "
            "shows how close each came"
        )
    rows = [row for row in rows if row["meets"] is not False]
    most = max(row["seeds"] for row in rows)
    row = next(row for row in rows if row["seeds"] == most)
    config_path = out_dir / row["run_dirs"][0] / "config.json"
    try:
        if config_path.is_file():
            return row, RunConfig.from_dict(json.loads(config_path.read_text()))
        if row["config"] is not None:  # trained by a worker on another machine
            return row, RunConfig.from_dict(row["config"])
        raise OSError(f"{config_path} is missing")
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"cannot read the best run's configuration {config_path}: {error}"
        ) from None
