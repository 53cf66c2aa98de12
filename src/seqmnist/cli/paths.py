"""Argument types shared by the commands, and the one-line rule for what they print."""

from __future__ import annotations

import argparse
from pathlib import Path


def path_argument(text: str) -> Path:
    """A path option's value; an empty string is refused (Path("") would mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path was given; name a file or folder")
    if "\0" in text:  # no file name holds one; the OS would refuse it with a ValueError
        raise argparse.ArgumentTypeError("a path cannot contain a NUL character")
    return Path(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seed_list(text: str) -> tuple[int, ...]:
    """ "0,1,2": distinct seeds, each a whole number the config takes."""
    from seqmnist.config import MAX_SEED

    parts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of seeds, e.g. 0,1,2")
    seeds = tuple(int(part) for part in parts)
    if max(seeds) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed is at most {MAX_SEED}, got {max(seeds)}")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return seeds


def one_line(text: object) -> str:
    """A message on one line, whatever a file name or value in it holds."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")
