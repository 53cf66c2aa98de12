"""`seqmnist eval`: recompute a run's accuracy, loss and confusion on a whole split."""

from __future__ import annotations

import argparse
import json

from seqmnist.cli.paths import path_argument
from seqmnist.config import DEVICES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a trained run on the test or validation split",
        description="Evaluate a run's saved weights on every image of a split.",
    )
    parser.add_argument(
        "run_dir", type=path_argument, metavar="RUN", help="run directory written by train"
    )
    parser.add_argument("--split", choices=("test", "val"), default="test", help="which split")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--data-dir", type=path_argument, help="folder with the dataset files (default: as trained)"
    )
    parser.add_argument("--device", choices=DEVICES, help="default: as trained")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from seqmnist.api import evaluate_run

    evaluation = evaluate_run(args.run_dir, args.split, data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(evaluation.to_dict()))
        return 0
    print(f"{evaluation.split}: accuracy {evaluation.accuracy:.4f}  loss {evaluation.loss:.4f}  "
          f"n {evaluation.n}")  # fmt: skip
    print("per-class accuracy: " + "  ".join(
        f"{label}:{accuracy:.3f}" for label, accuracy in enumerate(evaluation.per_class_accuracy)
    ))  # fmt: skip
    print("confusion (rows: true class, columns: predicted):")
    width = max(len(str(count)) for row in evaluation.confusion for count in row)
    for label, row in enumerate(evaluation.confusion):
        print(f"{label:>3} " + " ".join(f"{count:>{width}}" for count in row))
    return 0
