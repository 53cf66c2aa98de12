"""load_split reads (and downloads) only the two files its split lives in, and equals load_dataset."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from datasets_support import STEMS, Arrays, make_source, serve_dataset

from seqmnist.data import LabeledSplit, download_command, load_dataset, load_split
from seqmnist.data.sources import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES
from seqmnist.errors import DataError

if TYPE_CHECKING:
    from conftest import LocalServer, WriteDataset

SPLITS = ("train", "val", "test")


def own_stems(split: str) -> tuple[str, ...]:
    """The files `split` is read from."""
    return STEMS[2:] if split == "test" else STEMS[:2]


def assert_same_split(loaded: LabeledSplit, images: np.ndarray, labels: np.ndarray) -> None:
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.images.dtype == images.dtype == np.uint8
    assert loaded.labels.dtype == labels.dtype == np.int64


@pytest.mark.parametrize("compress", [True, False])
def test_folder_split_equals_load_dataset(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays, compress: bool
) -> None:
    folder = str(write_dataset(tmp_path / "tiny", *tiny_arrays, compress=compress))
    splits = load_dataset(folder, validation_size=3)
    for name in SPLITS:
        loaded = load_split(folder, validation_size=3, split=name)
        assert_same_split(loaded, *splits.split(name))
        assert (loaded.name, loaded.split) == ("tiny", name)
        assert loaded.class_names == splits.class_names and loaded.num_classes == 3
        assert loaded.image_shape == splits.image_shape == (5, 7)


def test_builtin_split_equals_load_dataset(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    source = make_source(tiny_arrays, ("http://127.0.0.1:9/",))
    write_dataset(tmp_path, *tiny_arrays)
    splits = load_dataset(source, tmp_path, validation_size=4, download=False)
    for name in SPLITS:
        loaded = load_split(source, tmp_path, validation_size=4, split=name, download=False)
        assert_same_split(loaded, *splits.split(name))
        assert loaded.class_names == ("a", "b", "c") and loaded.name == "tiny"


def test_empty_validation_split_keeps_its_shape(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    folder = str(write_dataset(tmp_path / "d", *tiny_arrays))
    loaded = load_split(folder, validation_size=0, split="val")
    assert len(loaded.images) == 0 and loaded.image_shape == (5, 7)


@pytest.mark.parametrize("split", SPLITS)
def test_folder_split_needs_only_its_files(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays, split: str
) -> None:
    folder = write_dataset(tmp_path / "d", *tiny_arrays)
    others = [stem for stem in STEMS if stem not in own_stems(split)]
    for stem in others:
        (folder / f"{stem}.gz").unlink()
    loaded = load_split(str(folder), validation_size=2, split=split)
    assert len(loaded.images) == {"train": 10, "val": 2, "test": 4}[split]
    with pytest.raises(DataError, match=f"no {others[0]}"):
        load_dataset(str(folder), validation_size=2)


def test_folder_split_names_only_the_files_it_needs(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    folder = write_dataset(tmp_path / "d", *tiny_arrays)
    (folder / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DataError) as info:
        load_split(str(folder), split="test")
    message = str(info.value)
    assert message.startswith(f"{folder}: no {TEST_LABELS}(.gz)")
    assert f"needs the files {TEST_IMAGES}, {TEST_LABELS} (gzip" in message
    assert TRAIN_IMAGES not in message


def test_folder_class_names_come_from_the_split_read(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    train_labels = np.array([0, 1, 2, 3, 4] * 2 + [0, 1], np.uint8)  # test labels stop at 2
    arrays = (tiny_arrays[0], train_labels, *tiny_arrays[2:])
    folder = str(write_dataset(tmp_path / "d", *arrays))
    assert load_dataset(folder, validation_size=2).num_classes == 5
    assert load_split(folder, validation_size=2, split="val").num_classes == 5
    assert load_split(folder, validation_size=2, split="test").class_names == ("0", "1", "2")


@pytest.mark.parametrize("split", SPLITS)
def test_builtin_split_downloads_only_its_files(
    server: LocalServer, tmp_path: Path, tiny_arrays: Arrays, split: str
) -> None:
    source = make_source(tiny_arrays, (serve_dataset(server, "/m/", tiny_arrays),))
    loaded = load_split(source, tmp_path, validation_size=2, split=split)
    wanted = [f"{stem}.gz" for stem in own_stems(split)]
    assert server.requests == [f"/m/{name}" for name in wanted]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(wanted)
    assert len(loaded.labels) == {"train": 10, "val": 2, "test": 4}[split]


@pytest.mark.parametrize("split", SPLITS)
def test_builtin_split_with_other_files_absent_downloads_nothing(
    server: LocalServer,
    tmp_path: Path,
    write_dataset: WriteDataset,
    tiny_arrays: Arrays,
    split: str,
) -> None:
    source = make_source(tiny_arrays, (serve_dataset(server, "/m/", tiny_arrays),))
    write_dataset(tmp_path, *tiny_arrays)
    for stem in STEMS:
        if stem not in own_stems(split):
            (tmp_path / f"{stem}.gz").unlink()
    expected = load_dataset(source, tmp_path / "full", validation_size=2).split(split)
    server.requests.clear()
    assert_same_split(load_split(source, tmp_path, validation_size=2, split=split), *expected)
    assert server.requests == []


def test_split_arguments_are_checked(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    nowhere = tmp_path / "nowhere"
    # An unknown split fails before any file is looked for, let alone downloaded.
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_split("mnist", nowhere, split="validation")
    assert not nowhere.exists()
    folder = str(write_dataset(tmp_path / "d", *tiny_arrays))
    with pytest.raises(DataError, match="validation_size 12 leaves no training images"):
        load_split(folder, validation_size=12, split="val")
    with pytest.raises(ValueError, match="validation_size"):
        load_split(folder, validation_size=-1, split="test")


def test_builtin_labels_must_fit_class_names(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    arrays = (*tiny_arrays[:3], np.array([0, 1, 3, 1], np.uint8))
    source = make_source(arrays, ("http://127.0.0.1:9/",))
    write_dataset(tmp_path, *arrays)
    with pytest.raises(DataError, match="labels range over 0..3 but the dataset has 3 classes"):
        load_split(source, tmp_path, split="test", download=False)


@pytest.mark.parametrize("download", [True, False])
def test_missing_file_without_network_says_what_to_do(
    refused_url: str, tmp_path: Path, tiny_arrays: Arrays, download: bool
) -> None:
    source = make_source(tiny_arrays, (refused_url, refused_url))
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_split(source, tmp_path, split="test", download=download)
    assert time.monotonic() - start < 2
    message = str(info.value)
    assert str(tmp_path / f"{TEST_IMAGES}.gz") in message  # the missing file, in full
    command = shlex.join(["seqmnist", "data", "download", "--dataset", "tiny"])
    assert f"run `{command} --data-dir {shlex.quote(str(tmp_path))}`" in message
    assert "--data-dir or $SEQMNIST_DATA_DIR at a folder holding them" in message
    assert "\n" not in message
    if download:
        assert "check the network" in message and "all 2 mirrors failed" in message


def test_download_command() -> None:
    assert download_command("mnist") == "seqmnist data download"
    assert download_command("fashion-mnist", Path("/my data")) == (
        "seqmnist data download --dataset fashion-mnist --data-dir '/my data'"
    )
