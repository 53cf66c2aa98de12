"""Loading, splitting, locating, verifying and downloading datasets, on tiny synthetic data."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from datasets_support import STEMS, Arrays, content_of, make_source, serve_dataset

from seqmnist.data import (
    BUILTIN_DATASETS,
    DatasetSource,
    FileSpec,
    download_dataset,
    load_dataset,
    resolve_data_dir,
    verify_dataset,
)
from seqmnist.data.sources import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from seqmnist.errors import DataError

if TYPE_CHECKING:
    from conftest import LocalServer, WriteDataset


def test_folder_dataset_of_any_image_size(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    folder = write_dataset(tmp_path / "tiny", *tiny_arrays)
    splits = load_dataset(str(folder), validation_size=2)
    train_images, train_labels, _, test_labels = tiny_arrays
    assert splits.name == "tiny"
    assert splits.image_shape == (5, 7)
    assert splits.num_classes == 3 and splits.class_names == ("0", "1", "2")
    assert [len(splits.split(name)[0]) for name in ("train", "val", "test")] == [10, 2, 4]
    # Validation is the FIRST training images, as the old TensorFlow reader had it.
    np.testing.assert_array_equal(splits.val_images, train_images[:2])
    np.testing.assert_array_equal(splits.train_images, train_images[2:])
    np.testing.assert_array_equal(splits.val_labels, train_labels[:2])
    np.testing.assert_array_equal(splits.test_labels, test_labels)
    for name in ("train", "val", "test"):
        images, labels = splits.split(name)
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert len(images) == len(labels)


def test_folder_of_raw_files(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    folder = write_dataset(tmp_path / "raw", *tiny_arrays, compress=False)
    splits = load_dataset(str(folder), data_dir=tmp_path / "ignored", validation_size=0)
    assert len(splits.train_images) == 12 and len(splits.val_images) == 0


def test_unknown_split_name(tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays):
    splits = load_dataset(str(write_dataset(tmp_path / "d", *tiny_arrays)), validation_size=2)
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        splits.split("validation")


def _replace(arrays: Arrays, index: int, value: np.ndarray) -> Arrays:
    changed = list(arrays)
    changed[index] = value
    return tuple(changed)  # type: ignore[return-value]


BROKEN = {
    # name: (index of the array to replace, its replacement, what the error must say)
    "fewer labels than images": (1, np.zeros(11, np.uint8), "11 labels for the 12 images"),
    "test shape differs": (2, np.zeros((4, 7, 5), np.uint8), r"test images are \(7, 5\)"),
    "negative label": (3, np.array([0, -1, 1, 2], np.int8), "labels range over -1..2"),
    "images not uint8": (0, np.zeros((12, 5, 7), np.int16), "expected uint8 images"),
    "images not 3-d": (2, np.zeros((4, 35), np.uint8), "expected uint8 images"),
    "labels not 1-d": (1, np.zeros((12, 1), np.uint8), "expected integer labels"),
    "float labels": (3, np.zeros(4, np.float32), "expected integer labels"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_inconsistent_folder_raises(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays, name: str
) -> None:
    index, value, message = BROKEN[name]
    folder = write_dataset(tmp_path / "bad", *_replace(tiny_arrays, index, value))
    with pytest.raises(DataError, match=message) as info:
        load_dataset(str(folder), validation_size=2)
    assert str(folder) in str(info.value)


def test_folder_missing_a_file(tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays):
    folder = write_dataset(tmp_path / "d", *tiny_arrays)
    (folder / f"{TEST_LABELS}.gz").unlink()
    with pytest.raises(DataError, match=f"no {TEST_LABELS}"):
        load_dataset(str(folder))


def test_validation_size_checked(tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays):
    folder = str(write_dataset(tmp_path / "d", *tiny_arrays))
    with pytest.raises(DataError, match="validation_size 12 leaves no training images"):
        load_dataset(folder, validation_size=12)
    with pytest.raises(ValueError, match="validation_size"):
        load_dataset(folder, validation_size=-1)


def test_unknown_dataset_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnsit'.*mnist, fashion-mnist"):
        load_dataset("mnsit", data_dir=tmp_path)


def test_builtin_datasets_are_described() -> None:
    assert set(BUILTIN_DATASETS) == {"mnist", "fashion-mnist"}
    mnist, fashion = BUILTIN_DATASETS["mnist"], BUILTIN_DATASETS["fashion-mnist"]
    assert mnist.mirrors[0] == "https://ossci-datasets.s3.amazonaws.com/mnist/"
    assert all(spec.content_sha256 for spec in mnist.files)
    assert all(spec.gz_sha256 and not spec.content_sha256 for spec in fashion.files)
    assert fashion.class_names[0] == "T-shirt/top" and len(fashion.class_names) == 10
    assert [spec.stem for spec in fashion.files] == list(STEMS)


# --- where the data lives ---------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SEQMNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_data_dir_argument_beats_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path):
    clean_env.setenv("SEQMNIST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir("mnist", tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir("mnist", str(tmp_path / "arg")) == tmp_path / "arg"


def test_environment_beats_cache(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    clean_env.setenv("SEQMNIST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir("mnist") == tmp_path / "env"


def test_cache_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_data_dir("mnist") == tmp_path / "home" / ".cache" / "seqmnist" / "mnist"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clean_env.setenv("SEQMNIST_DATA_DIR", "")  # empty counts as unset
    assert resolve_data_dir("fashion-mnist") == tmp_path / "xdg" / "seqmnist" / "fashion-mnist"


def test_subfolder_named_after_dataset(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "root" / "fashion-mnist").mkdir(parents=True)
    assert (
        resolve_data_dir("fashion-mnist", tmp_path / "root") == tmp_path / "root" / "fashion-mnist"
    )
    assert resolve_data_dir("mnist", tmp_path / "root") == tmp_path / "root"
    clean_env.setenv("SEQMNIST_DATA_DIR", str(tmp_path / "root"))
    assert resolve_data_dir("fashion-mnist") == tmp_path / "root" / "fashion-mnist"


def test_folder_dataset_ignores_data_dir(tmp_path: Path) -> None:
    assert resolve_data_dir(str(tmp_path), tmp_path / "elsewhere") == tmp_path


# --- built-in style datasets: checksums and downloads -------------------------------------


@pytest.mark.parametrize("first_mirror", ["missing", "not gzip", "other content"])
def test_load_downloads_missing_files(
    server: LocalServer, tmp_path: Path, tiny_arrays: Arrays, first_mirror: str
) -> None:
    good = serve_dataset(server, "/good/", tiny_arrays)
    if first_mirror == "not gzip":  # right content, but the raw file where a .gz belongs
        for stem, array in zip(STEMS, tiny_arrays, strict=True):
            server.serve(f"/bad/{stem}.gz", content_of(array))
    elif first_mirror == "other content":
        serve_dataset(server, "/bad/", tuple(array[::-1].copy() for array in tiny_arrays))
    source = make_source(tiny_arrays, (server.url("/bad/"), good))
    splits = load_dataset(source, data_dir=tmp_path, validation_size=3)
    assert server.requests[:2] == [f"/bad/{TRAIN_IMAGES}.gz", f"/good/{TRAIN_IMAGES}.gz"]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(f"{s}.gz" for s in STEMS)
    assert splits.name == "tiny" and splits.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(splits.val_images, tiny_arrays[0][:3])
    assert len(splits.train_labels) == 9
    # Loading again reads the files already there.
    requests = len(server.requests)
    load_dataset(source, data_dir=tmp_path, validation_size=3)
    assert len(server.requests) == requests


def test_load_without_download_reports_missing(tmp_path: Path, tiny_arrays: Arrays) -> None:
    source = make_source(tiny_arrays, ("http://127.0.0.1:9/",))
    with pytest.raises(DataError) as info:
        load_dataset(source, data_dir=tmp_path, validation_size=2, download=False)
    message = str(info.value)
    command = shlex.join(["seqmnist", "data", "download", "--dataset", "tiny"])
    assert message.startswith(f"{tmp_path / TRAIN_IMAGES}.gz: missing; run `{command} --data-dir")
    assert "--data-dir or $SEQMNIST_DATA_DIR" in message and "\n" not in message


@pytest.mark.parametrize("by_gz", [False, True])
def test_checksum_mismatch_on_load(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays, by_gz: bool
) -> None:
    source = make_source(tiny_arrays, ("http://127.0.0.1:9/",), by_gz=by_gz)
    other = _replace(tiny_arrays, 2, tiny_arrays[2][::-1].copy())  # same shape, other pixels
    write_dataset(tmp_path, *other)
    with pytest.raises(DataError, match=f"{TEST_IMAGES}.gz: sha256 .*point the data directory"):
        load_dataset(source, data_dir=tmp_path, validation_size=2, download=False)
    write_dataset(tmp_path, *tiny_arrays)
    assert load_dataset(source, tmp_path, validation_size=2, download=False).num_classes == 3


def test_builtin_labels_must_fit_class_names(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    arrays = _replace(tiny_arrays, 1, np.array([0, 1, 2, 3] * 3, np.uint8))
    source = make_source(arrays, ("http://127.0.0.1:9/",))
    write_dataset(tmp_path, *arrays)
    with pytest.raises(DataError, match="labels range over 0..3 but the dataset has 3 classes"):
        load_dataset(source, data_dir=tmp_path, validation_size=2, download=False)


def test_verify_reports_each_file(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    source = make_source(tiny_arrays, ("http://127.0.0.1:9/",))
    write_dataset(tmp_path, *tiny_arrays)
    reports = verify_dataset(source, tmp_path)
    assert [report.ok for report in reports] == [True] * 4
    assert all("sha256 matches" in report.message for report in reports)
    (tmp_path / f"{TRAIN_LABELS}.gz").write_bytes(b"garbage")
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    reports = verify_dataset(source, tmp_path)
    assert [report.ok for report in reports] == [True, False, True, False]
    assert reports[1].path == tmp_path / f"{TRAIN_LABELS}.gz"
    assert "missing" in reports[3].message


def test_verify_folder_checks_consistency(
    tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    folder = write_dataset(tmp_path / "d", *_replace(tiny_arrays, 3, np.zeros(3, np.uint8)))
    reports = verify_dataset(str(folder))
    assert [report.ok for report in reports] == [True] * 4 + [False]
    assert "no checksum known" in reports[0].message
    assert reports[4].path == folder and "3 labels for the 4 images" in reports[4].message


def test_download_dataset_fetches_only_missing_or_invalid(
    server: LocalServer, tmp_path: Path, write_dataset: WriteDataset, tiny_arrays: Arrays
) -> None:
    source = make_source(tiny_arrays, (serve_dataset(server, "/m/", tiny_arrays),))
    write_dataset(tmp_path, *tiny_arrays)
    assert download_dataset(source, tmp_path) == tmp_path
    assert server.requests == []
    (tmp_path / f"{TRAIN_IMAGES}.gz").write_bytes(b"corrupt")
    (tmp_path / f"{TEST_LABELS}.gz").unlink()
    download_dataset(source, tmp_path)
    assert sorted(server.requests) == sorted([f"/m/{TEST_LABELS}.gz", f"/m/{TRAIN_IMAGES}.gz"])
    assert all(report.ok for report in verify_dataset(source, tmp_path))


def test_download_rejects_folder_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing to download"):
        download_dataset(str(tmp_path))


def test_source_validates_itself() -> None:
    spec = FileSpec(TRAIN_IMAGES)
    with pytest.raises(ValueError, match="plain non-empty name"):
        DatasetSource("a/b", ("x", "y"), (), spec, spec, spec, spec)
    source = DatasetSource("ok", ("x", "y"), ("http://h/a", "http://h/b/"), spec, spec, spec, spec)
    assert source.urls(spec) == [f"http://h/a/{TRAIN_IMAGES}.gz", f"http://h/b/{TRAIN_IMAGES}.gz"]
    assert dataclasses.is_dataclass(source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        source.name = "other"  # type: ignore[misc]
