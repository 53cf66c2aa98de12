"""Train every preset once and print the README's results table from the runs' summaries.

    python benchmarks/results_table.py [PRESET ...]   # default: all presets

Each run goes to runs/table/PRESET; a preset already trained there is read, not retrained.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seqmnist.cli import main as seqmnist
from seqmnist.presets import PRESETS

RUNS = Path("runs/table")

# What each reference program reached as written (../shared/reference-programs.md).
REFERENCE_CLAIMS = {
    "ref1-stacked": "98.4-98.7% in 65 s",
    "ref2-lstm128": "96.3-96.8% in 18 s (claimed 99.21% on 128 images)",
    "ref3-lstm100": "93.7-94.8% in 105 s",
    "ref4-lstm100": "92.5-93.7% in 66 s",
    "ref5-bilstm": "98.2-98.6% in 180 s",
    "default": "-",
}


def main(presets: list[str]) -> int:
    rows = [
        "| preset | model | test accuracy | training time | reference as written |",
        "| --- | --- | --- | --- | --- |",
    ]
    for preset in presets:
        run_dir = RUNS / preset
        if not (run_dir / "summary.json").exists():
            status = seqmnist(["train", "--preset", preset, "--no-progress", "--out", str(run_dir)])
            if status != 0:
                return status
        summary = json.loads((run_dir / "summary.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        rows.append(
            f"| `{preset}` | {_describe(config['model'])} | "
            f"{100 * summary['test_accuracy']:.2f}% | {summary['train_seconds']:.0f} s | "
            f"{REFERENCE_CLAIMS[preset]} |"
        )
    print("\n".join(rows))
    return 0


def _describe(model: dict) -> str:
    widths = "+".join(map(str, model["hidden_sizes"]))
    direction = "bi" if model["bidirectional"] else ""
    return f"{direction}{model['cell'].upper()} {widths}, {model['view']}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or list(PRESETS)))
