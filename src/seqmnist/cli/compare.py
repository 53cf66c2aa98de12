"""`seqmnist compare`: runs side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqmnist.cli.paths import path_argument

FORMATS = {
    "test_accuracy": "{:.4f}",
    "val_accuracy": "{:.4f}",
    "test_loss": "{:.4f}",
    "train_seconds": "{:.1f}",
    "samples_per_second": "{:.0f}",
    "params": "{:,}",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="show runs side by side: differing settings, accuracy, time, size",
        description=(
            "Compare runs: the configuration fields that differ between them, then test and "
            "validation accuracy, test loss, training time, throughput and parameter count."
        ),
    )
    parser.add_argument(
        "run_dirs", type=path_argument, nargs="+", metavar="RUN", help="run directories"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqmnist.compare import compare_runs

    comparison = compare_runs(args.run_dirs)
    if args.json:
        print(json.dumps(comparison.to_dict()))
        return 0
    header = ("run", *(Path(run).name or run for run in comparison.runs))
    settings = [(key, *map(_show, values)) for key, values in comparison.differences.items()]
    if len(comparison.runs) > 1 and not settings:
        settings = [("(same configuration)", *[""] * len(comparison.runs))]
    results = [
        (key, *(_show(value, FORMATS[key]) for value in values))
        for key, values in comparison.results.items()
    ]
    widths = [max(map(len, column)) for column in zip(header, *settings, *results)]
    for block in ([header], settings, results):
        for row in block:
            print("  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths))
            ).rstrip())  # fmt: skip
        if block and block is not results:
            print("  ".join("-" * width for width in widths))
    return 0


def _show(value, pattern: str = "{}") -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return pattern.format(value)
