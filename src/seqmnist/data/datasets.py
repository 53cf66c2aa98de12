"""Find, download, verify and load a dataset: a built-in name or a folder of IDX files."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqmnist.data.download import download_verified
from seqmnist.data.idx import GZIP_MAGIC, parse_idx_bytes, read_idx
from seqmnist.data.sources import (
    BUILTIN_DATASETS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSource,
    FileSpec,
)
from seqmnist.data.splits import (
    ImageSplits,
    LabeledFiles,
    LabeledSplit,
    build_split,
    build_splits,
    split_source,
)
from seqmnist.errors import DataError, StorageError
from seqmnist.files import check_not_blocked, check_writable_folder

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SEQMNIST_DATA_DIR"


@dataclass(frozen=True)
class FileReport:
    """The outcome of checking one file (or, for a consistency problem, the folder)."""

    path: Path
    ok: bool
    message: str


def resolve_data_dir(dataset: str | DatasetSource, data_dir: str | Path | None = None) -> Path:
    """The folder holding `dataset`'s files.

    A folder dataset is its own folder. For a built-in one: `data_dir`, else
    $SEQMNIST_DATA_DIR, else <cache>/seqmnist/<name>; a given folder holding a
    subfolder named after the dataset means that subfolder, so one root can hold
    several datasets.
    """
    source = _source(dataset)
    if source is None:
        return _expand(dataset)
    given = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if given is None:
        cache = os.environ.get("XDG_CACHE_HOME") or _home() / ".cache"
        return Path(cache) / "seqmnist" / source.name
    root = _expand(given)
    return root / source.name if (root / source.name).is_dir() else root


def _expand(path: str | Path) -> Path:
    """``path`` with a leading ~ or ~user expanded; an unknown user's ~ stays, as in a shell."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # "Could not determine home directory"
        return Path(path)


def _home() -> Path:
    try:
        return Path.home()
    except RuntimeError:
        raise DataError(
            f"there is no home folder for the download cache; give --data-dir or set {DATA_DIR_ENV}"
        ) from None


def load_dataset(
    dataset: str | DatasetSource = "mnist",
    data_dir: str | Path | None = None,
    validation_size: int = 5000,
    download: bool = True,
) -> ImageSplits:
    """Load train/validation/test splits, downloading missing built-in files if allowed.

    `dataset` is a built-in name, a DatasetSource, or a folder holding the four
    standard files (write "./mnist" for a folder that shares a built-in's name).
    Built-in files are checked against their checksums, so a wrong folder is caught.
    """
    source = _source(dataset)
    directory = resolve_data_dir(dataset, data_dir)
    specs = _specs(source)
    paths = _locate_all(source, specs, directory, data_dir, download)
    arrays = [_read_verified(path, spec)[0] for path, spec in zip(paths, specs, strict=True)]
    train, test = _pair(paths, arrays)
    return build_splits(*_naming(source, directory), train, test, validation_size)


def load_split(
    dataset: str | DatasetSource = "mnist",
    data_dir: str | Path | None = None,
    validation_size: int = 5000,
    split: str = "test",
    download: bool = True,
) -> LabeledSplit:
    """Load one split, reading (and downloading if allowed) only the two files it lives in.

    "test" needs only the test files; "train" and "val" only the training files, so
    evaluation works where the others are absent. Images and labels equal those of
    `load_dataset(...).split(split)`; so do the class names, except that a folder
    dataset's are counted from this split's label file alone.
    """
    pair = split_source(split)  # an unknown name fails before any file is touched
    source = _source(dataset)
    directory = resolve_data_dir(dataset, data_dir)
    specs = _specs(source)[:2] if pair == "train" else _specs(source)[2:]
    paths = _locate_all(source, specs, directory, data_dir, download)
    images, labels = (
        _read_verified(path, spec)[0] for path, spec in zip(paths, specs, strict=True)
    )
    files = LabeledFiles(paths[0], images, paths[1], labels)
    return build_split(*_naming(source, directory), files, split, validation_size)


def verify_dataset(
    dataset: str | DatasetSource, data_dir: str | Path | None = None
) -> list[FileReport]:
    """Check every file of `dataset` (checksums where known), one report per file.

    When every file is readable, a last report on the folder flags files that
    do not belong together (counts, shapes, label range).
    """
    source = _source(dataset)
    directory = resolve_data_dir(dataset, data_dir)
    try:
        # A file in the folder's place is a wrong --data-dir, not four missing files.
        check_not_blocked(directory, "--data-dir")
    except StorageError as error:
        raise DataError(str(error)) from None
    reports, paths, arrays = [], [], []
    for spec in _specs(source):
        path = _find(directory, spec.stem)
        if path is None:
            hint = f"; run `{download_command(source, data_dir)}`" if source is not None else ""
            reports.append(FileReport(directory / spec.gz_name, False, f"missing{hint}"))
            continue
        try:
            array, verified = _read_verified(path, spec)
        except DataError as error:
            reports.append(FileReport(path, False, str(error)))
            continue
        checked = "sha256 matches" if verified else "no checksum known"
        reports.append(FileReport(path, True, f"ok: {array.dtype} {array.shape}, {checked}"))
        paths.append(path)
        arrays.append(array)
    if len(arrays) == 4:
        class_names = source.class_names if source is not None else None
        try:
            build_splits(directory.name, class_names, *_pair(paths, arrays), validation_size=0)
        except DataError as error:
            reports.append(FileReport(directory, False, str(error)))
    return reports


def download_dataset(dataset: str | DatasetSource, data_dir: str | Path | None = None) -> Path:
    """Download the files of a built-in dataset that are missing or invalid; return its folder."""
    source = _source(dataset)
    if source is None:
        raise DataError(f"{dataset}: a folder dataset has nothing to download; use a built-in name")
    directory = resolve_data_dir(source, data_dir)
    for spec in source.files:
        path = _find(directory, spec.stem)
        if path is not None:
            try:
                _read_verified(path, spec)
                logger.info("%s is present and valid; not downloading it", path)
                continue
            except DataError as error:
                logger.warning("%s; downloading it again", error)
        _download(source, spec, directory, data_dir)
    return directory


def download_command(dataset: str | DatasetSource, data_dir: str | Path | None = None) -> str:
    """The `seqmnist data download` command line that fetches built-in `dataset` into `data_dir`."""
    name = dataset.name if isinstance(dataset, DatasetSource) else dataset
    words = ["seqmnist", "data", "download"]
    if name != "mnist":
        words += ["--dataset", name]
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    return shlex.join(words)


_STEMS = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def _source(dataset: str | DatasetSource) -> DatasetSource | None:
    """The built-in or given source, or None for a folder dataset."""
    if isinstance(dataset, DatasetSource):
        return dataset
    if not dataset.strip():  # Path("") would be the current folder
        raise DataError(
            "an empty dataset name was given; give a built-in name "
            f"({', '.join(BUILTIN_DATASETS)}) or a folder holding the four MNIST-style IDX files"
        )
    if dataset in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[dataset]
    if _expand(dataset).is_dir():
        return None
    raise DataError(
        f"unknown dataset {dataset!r}: not a built-in ({', '.join(BUILTIN_DATASETS)}) nor a "
        "folder; give a built-in name or a folder holding the four MNIST-style IDX files"
    )


def _find(directory: Path, stem: str) -> Path | None:
    """The file for `stem`, preferring the .gz (what downloads write) to a raw one."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def _specs(source: DatasetSource | None) -> tuple[FileSpec, ...]:
    """The files to read; a folder dataset has the standard names and no checksums."""
    if source is None:
        return tuple(FileSpec(stem) for stem in _STEMS)
    return source.files


def _locate_all(
    source: DatasetSource | None,
    specs: tuple[FileSpec, ...],
    directory: Path,
    data_dir: str | Path | None,
    download: bool,
) -> list[Path]:
    """The paths of `specs`' files, downloading missing ones first where allowed."""
    paths = []
    for spec in specs:
        path = _find(directory, spec.stem)
        if path is None and source is None:
            raise DataError(
                f"{directory}: no {spec.stem}(.gz); a dataset folder needs the files "
                f"{', '.join(needed.stem for needed in specs)} (gzip or raw)"
            )
        if path is None and not download:
            raise DataError(
                f"{directory / spec.gz_name}: missing; {_advice(source, directory, data_dir)}"
            )
        paths.append(path or _download(source, spec, directory, data_dir))
    return paths


def _advice(source: DatasetSource, directory: Path, data_dir: str | Path | None) -> str:
    """What to do about a built-in file that is missing from `directory` and not downloaded."""
    return (
        f"run `{download_command(source, data_dir)}` (where there is a network, then copy the "
        f"files into {directory}), or point --data-dir or ${DATA_DIR_ENV} at a folder holding them"
    )


def _naming(source: DatasetSource | None, directory: Path) -> tuple[str, tuple[str, ...] | None]:
    """The dataset's name and class names; a folder is named after itself, its classes later."""
    if source is None:
        return directory.name, None
    return source.name, source.class_names


def _pair(paths: list[Path], arrays: list[np.ndarray]) -> tuple[LabeledFiles, LabeledFiles]:
    """(train, test) from the four files in standard order."""
    train = LabeledFiles(paths[0], arrays[0], paths[1], arrays[1])
    test = LabeledFiles(paths[2], arrays[2], paths[3], arrays[3])
    return train, test


def _read_verified(path: Path, spec: FileSpec) -> tuple[np.ndarray, bool]:
    """The array in `path`, and whether a known checksum confirmed it."""
    if spec.content_sha256 is not None:
        return read_idx(path, expected_sha256=spec.content_sha256), True
    with open(path, "rb") as file:
        is_gzip = file.read(2) == GZIP_MAGIC
    if spec.gz_sha256 is not None and is_gzip:
        # Only the .gz file's hash is known; a raw copy cannot be checked against it.
        actual = _sha256_file(path)
        if actual != spec.gz_sha256:
            raise DataError(
                f"{path}: sha256 of the file is {actual}, expected {spec.gz_sha256}; the file is "
                "corrupt or not the one expected: delete it or point the data directory at the "
                "right folder"
            )
        return read_idx(path), True
    return read_idx(path), False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(
    source: DatasetSource, spec: FileSpec, directory: Path, data_dir: str | Path | None
) -> Path:
    dest = directory / spec.gz_name
    try:
        # Before the network: a folder that cannot take the file fails at once, not after it.
        check_writable_folder(directory, "--data-dir")
    except StorageError as error:
        raise DataError(str(error)) from None
    logger.info("downloading %s of %s into %s", spec.gz_name, source.name, directory)
    check = functools.partial(_check_body, spec)
    advice = f"check the network, or {_advice(source, directory, data_dir)}"
    download_verified(source.urls(spec), dest, check, advice=advice)
    return dest


def _check_body(spec: FileSpec, body: bytes) -> None:
    """Reject a downloaded body unless it is a gzip IDX file matching `spec`'s checksums."""
    if body[:2] != GZIP_MAGIC:
        raise DataError(f"{spec.gz_name}: not a gzip file")
    if spec.gz_sha256 is not None:
        actual = hashlib.sha256(body).hexdigest()
        if actual != spec.gz_sha256:
            raise DataError(f"{spec.gz_name}: sha256 is {actual}, expected {spec.gz_sha256}")
    parse_idx_bytes(body, spec.gz_name, expected_sha256=spec.content_sha256)
