"""`seqmnist plot`: pictures of a trained run, as PNG files."""

from __future__ import annotations

import argparse

from seqmnist.cli.paths import path_argument
from seqmnist.cli.startup import PRELOAD


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="write PNGs: training curves, confusion matrix, mistakes, step-by-step reading",
        description=(
            "Write curves.png (loss and accuracy per epoch), confusion.png (test set), "
            "misclassified.png (the most confident test mistakes) and steps.png (class "
            "probabilities after each step for a few test digits)."
        ),
    )
    parser.add_argument(
        "run_dir", type=path_argument, metavar="RUN", help="run directory written by train"
    )
    parser.add_argument(
        "--out",
        type=path_argument,
        help="folder for the PNGs, created if need be (default: RUN/plots)",
    )
    parser.add_argument(
        "--examples", type=int, metavar="N",
        help="test digits in steps.png, one of each of N classes, 1 to the run's number "
        "of classes (default: 4, or every class if fewer)",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=path_argument, help="folder with the dataset files (default: as trained)"
    )
    parser.set_defaults(handler=run, preload=(*PRELOAD, "PIL.Image", "matplotlib.figure"))


def run(args: argparse.Namespace) -> int:
    from seqmnist.plots import write_run_plots

    for path in write_run_plots(
        args.run_dir, args.out, data_dir=args.data_dir, examples=args.examples
    ):
        print(f"wrote {path}")
    return 0
