"""Run `seqmnist bench` and keep its result, named by device, torch version and date.

    python benchmarks/record.py --to-accuracy            # CPU or the GPU torch finds
    python benchmarks/record.py --preset ref5-bilstm     # any `seqmnist bench` options

Writes benchmarks/results/DATE_DEVICE_torchVERSION.json holding the exact
command and the result; BENCHMARKS.md quotes these files.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from seqmnist.cli import build_parser

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    argv = ["bench", *sys.argv[1:], "--json"]
    args = build_parser().parse_args(argv)
    from seqmnist.bench.run import run_benchmark

    overrides = {
        name: value
        for name in ("data_dir", "device", "precision", "batch_size")
        if (value := getattr(args, name)) is not None
    }
    result = run_benchmark(
        args.preset, steps=args.steps, to_accuracy=args.to_accuracy,
        accuracy_preset=args.accuracy_preset, accuracy_steps=args.accuracy_steps,
        eval_every=args.eval_every, overrides=overrides,
    )  # fmt: skip
    result["command"] = "seqmnist " + " ".join(argv)
    result["date"] = time.strftime("%Y-%m-%d")
    device = re.sub(r"[^A-Za-z0-9]+", "-", result["device_name"]).strip("-")
    name = f"{result['date']}_{device}_torch{result['torch_version'].split('+')[0]}"
    suffix = "_to-accuracy" if args.to_accuracy else ""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}_{args.preset}{suffix}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
