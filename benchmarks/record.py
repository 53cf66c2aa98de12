"""Run `seqmnist bench` and keep its result, named by device, torch version and date.

    python benchmarks/record.py --to-accuracy            # CPU or the GPU torch finds
    python benchmarks/record.py --preset ref5-bilstm     # any `seqmnist bench` options
    python benchmarks/record.py --cells                  # every family, 28 and 784 steps

Writes benchmarks/results/DATE_DEVICE_torchVERSION.json holding the exact
command and the result; BENCHMARKS.md quotes these files.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

from seqmnist.cli import build_parser
from seqmnist.cli.bench import measure, measure_cells
from seqmnist.errors import SeqmnistError
from seqmnist.runtime import process_settings_for_command

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    argv = ["bench", *sys.argv[1:], "--json"]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        with process_settings_for_command():  # as every seqmnist command runs
            result = measure_cells(args) if args.cells is not None else measure(args)
    except SeqmnistError as error:  # one line, as `seqmnist bench` prints it
        print(f"record.py: error: {error}", file=sys.stderr)
        return 2
    result["command"] = "seqmnist " + " ".join(argv)
    result["date"] = time.strftime("%Y-%m-%d")
    device = re.sub(r"[^A-Za-z0-9]+", "-", result["device_name"]).strip("-")
    name = f"{result['date']}_{device}_torch{result['torch_version'].split('+')[0]}"
    if args.cells is not None:
        what = "cells"
    else:
        what = args.preset + ("_to-accuracy" if args.to_accuracy else "")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}_{what}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
