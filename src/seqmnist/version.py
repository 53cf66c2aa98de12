"""The installed package's version, from its metadata (so it is written in one place)."""

from __future__ import annotations

from importlib import metadata


def package_version() -> str:
    try:
        return metadata.version("seqmnist")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"
