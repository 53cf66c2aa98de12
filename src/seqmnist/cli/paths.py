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


def one_line(text: object) -> str:
    """A message on one line, whatever a file name or value in it holds."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")
