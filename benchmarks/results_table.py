"""Train presets once and print the README's results tables from the runs' summaries.

    python benchmarks/results_table.py [PRESET ...]   # default: row-lstm, default and the references
    python benchmarks/results_table.py --families     # every family's row-NAME preset

Each run goes to runs/table/PRESET; a preset already trained there is read, not retrained.
The pixel and permuted recipes take hours on a CPU and are never run by default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from seqmnist.cli import main as seqmnist
from seqmnist.config import RunConfig
from seqmnist.presets import PRESETS, get_preset
from seqmnist.presets.references import REFERENCES

RUNS = Path("runs/table")

# What each reference program reached as written (../shared/reference-programs.md).
REFERENCE_CLAIMS = {
    "ref1-stacked": "98.4-98.7% in 65 s",
    "ref2-lstm128": "96.3-96.8% in 18 s (claimed 99.21% on 128 images)",
    "ref3-lstm100": "93.7-94.8% in 105 s",
    "ref4-lstm100": "92.5-93.7% in 66 s",
    "ref5-bilstm": "98.2-98.6% in 180 s",
}


def main(presets: list[str]) -> int:
    rows = [
        "| preset | model | test accuracy | training time | reference as written |",
        "| --- | --- | --- | --- | --- |",
    ]
    for preset in presets:
        summary, config = _trained(preset)
        if summary is None:
            return 1
        rows.append(
            f"| `{preset}` | {_describe(config['model'])} | "
            f"{100 * summary['test_accuracy']:.2f}% | {summary['train_seconds']:.0f} s | "
            f"{REFERENCE_CLAIMS.get(preset, '-')} |"
        )
    print("\n".join(rows))
    return 0


def families() -> int:
    """The row-NAME presets, one per family (row-lstm, the LSTM they are compared with, first)."""
    rows = [
        "| preset | model | parameters | test accuracy | training time | samples/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for preset in [name for name in PRESETS if name.startswith("row-")]:
        summary, config = _trained(preset)
        if summary is None:
            return 1
        rows.append(
            f"| `{preset}` | {_describe(config['model'])} | {summary['params']:,} | "
            f"{100 * summary['test_accuracy']:.2f}% | {summary['train_seconds']:.0f} s | "
            f"{summary['samples_per_second']:,.0f} |"
        )
    print("\n".join(rows))
    return 0


def _trained(preset: str) -> tuple[dict | None, dict | None]:
    run_dir = RUNS / preset
    if not (run_dir / "summary.json").exists() or not _follows(run_dir, preset):
        # (a run left from before the preset changed is trained again, not reported)
        argv = ["train", "--preset", preset, "--no-progress", "--out", str(run_dir)]
        status = seqmnist([*argv, "--overwrite"] if run_dir.exists() else argv)
        if status != 0:
            return None, None
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    return summary, config


def _follows(run_dir: Path, preset: str) -> bool:
    """Whether the run trained the preset's recipe as the preset is today."""
    trained = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    wanted = get_preset(preset)
    data = (trained.data.dataset, trained.data.validation_size)
    return (trained.model, trained.train, data) == (
        wanted.model, wanted.train, (wanted.data.dataset, wanted.data.validation_size)
    )  # fmt: skip


# How the papers write each family's name.
NAMES = {"mingru": "minGRU", "minlstm": "minLSTM", "cornn": "coRNN", "indrnn": "IndRNN"}


def _describe(model: dict) -> str:
    sizes = model["hidden_sizes"]
    same = len(sizes) > 2 and len(set(sizes)) == 1
    widths = f"{len(sizes)}x{sizes[0]}" if same else "+".join(map(str, sizes))
    direction = "bi" if model["bidirectional"] else ""
    name = NAMES.get(model["cell"], model["cell"].upper())
    return f"{direction}{name} {widths}, {model['view']}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--families"]:
        sys.exit(families())
    sys.exit(main(sys.argv[1:] or ["row-lstm", *REFERENCES]))
