"""Built-in-style datasets for the data tests: checksummed sources and their served files."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from seqmnist.data import DatasetSource, FileSpec, write_idx
from seqmnist.data.sources import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS

if TYPE_CHECKING:
    from conftest import LocalServer

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def content_of(array: np.ndarray) -> bytes:
    """The decompressed IDX bytes write_idx produces for `array`."""
    return gzip.decompress(gz_of(array))


def gz_of(array: np.ndarray) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.gz"
        write_idx(path, array)
        return path.read_bytes()


def make_source(arrays: Arrays, mirrors: tuple[str, ...], by_gz: bool = False) -> DatasetSource:
    """A three-class built-in-style dataset whose checksums match `arrays`."""
    specs = []
    for stem, array in zip(STEMS, arrays, strict=True):
        if by_gz:
            specs.append(FileSpec(stem, gz_sha256=hashlib.sha256(gz_of(array)).hexdigest()))
        else:
            specs.append(
                FileSpec(stem, content_sha256=hashlib.sha256(content_of(array)).hexdigest())
            )
    return DatasetSource("tiny", ("a", "b", "c"), mirrors, *specs)


def serve_dataset(server: LocalServer, base: str, arrays: Arrays) -> str:
    """Serve the four .gz files of `arrays` under `base`; returns the mirror's URL."""
    for stem, array in zip(STEMS, arrays, strict=True):
        server.serve(f"{base}{stem}.gz", gz_of(array))
    return server.url(base)
