"""The command line: a thin layer over the library. Only this package prints."""

from __future__ import annotations

import argparse
import logging
import sys

from seqmnist.cli import bench, compare, data, evaluate, export, plot, predict, presets, train
from seqmnist.errors import SeqmnistError

COMMANDS = (train, evaluate, predict, export, plot, compare, presets, data, bench)


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes get one line saying what is wrong and where help is."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="seqmnist",
        description="Train, evaluate and use recurrent classifiers that read images as sequences.",
    )
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(
        title="commands", dest="command", required=True, parser_class=OneLineErrorParser
    )
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.handler(args) or 0
    except SeqmnistError as error:
        print(f"seqmnist: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqmnist: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from seqmnist import __version__

    return f"seqmnist {__version__}"
