"""`seqmnist presets`: one line per preset."""

from __future__ import annotations

import argparse

from seqmnist.presets import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets",
        help="list the presets",
        description="List the presets: seqmnist's default and the five reference programs.",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    width = max(map(len, PRESETS))
    for name, make in PRESETS.items():
        print(f"{name:<{width}}  {make().description}")
    return 0
