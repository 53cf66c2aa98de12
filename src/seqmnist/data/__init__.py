"""Datasets of small grey images with integer labels, read from MNIST-style IDX files."""

from seqmnist.data.datasets import (
    FileReport,
    download_dataset,
    load_dataset,
    resolve_data_dir,
    verify_dataset,
)
from seqmnist.data.idx import read_idx, write_idx
from seqmnist.data.sources import BUILTIN_DATASETS, DatasetSource, FileSpec
from seqmnist.data.splits import ImageSplits

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetSource",
    "FileReport",
    "FileSpec",
    "ImageSplits",
    "download_dataset",
    "load_dataset",
    "read_idx",
    "resolve_data_dir",
    "verify_dataset",
    "write_idx",
]
