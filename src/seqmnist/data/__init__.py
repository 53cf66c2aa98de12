"""Datasets of small grey images with integer labels, read from MNIST-style IDX files."""

from seqmnist.data.datasets import (
    FileReport,
    download_command,
    download_dataset,
    load_dataset,
    load_split,
    resolve_data_dir,
    verify_dataset,
)
from seqmnist.data.download import DownloadTimeouts
from seqmnist.data.idx import read_idx, write_idx
from seqmnist.data.sources import BUILTIN_DATASETS, DatasetSource, FileSpec
from seqmnist.data.splits import ImageSplits, LabeledSplit

__all__ = [
    "BUILTIN_DATASETS",
    "DatasetSource",
    "DownloadTimeouts",
    "FileReport",
    "FileSpec",
    "ImageSplits",
    "LabeledSplit",
    "download_command",
    "download_dataset",
    "load_dataset",
    "load_split",
    "read_idx",
    "resolve_data_dir",
    "verify_dataset",
    "write_idx",
]
