"""The real MNIST, found through $SEQMNIST_DATA_DIR (CI: ../shared/data/mnist)."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqmnist.data import ImageSplits, load_dataset, load_split, resolve_data_dir, verify_dataset
from seqmnist.data.sources import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES


@pytest.fixture(scope="module")
def mnist() -> ImageSplits:
    if not os.environ.get("SEQMNIST_DATA_DIR"):
        pytest.skip("SEQMNIST_DATA_DIR is not set; point it at a folder holding MNIST")
    folder = resolve_data_dir("mnist")
    if not any((folder / name).is_file() for name in (f"{TRAIN_IMAGES}.gz", TRAIN_IMAGES)):
        pytest.skip(f"no MNIST files in {folder} (from SEQMNIST_DATA_DIR)")
    return load_dataset("mnist", download=False)


def test_standard_split(mnist: ImageSplits) -> None:
    assert [len(mnist.split(name)[1]) for name in ("train", "val", "test")] == [55000, 5000, 10000]
    assert mnist.image_shape == (28, 28) and mnist.num_classes == 10
    assert set(np.unique(mnist.test_labels)) == set(range(10))
    # The first validation image is the first image of the training file.
    gz_path = resolve_data_dir("mnist") / f"{TRAIN_IMAGES}.gz"
    with gzip.open(gz_path) if gz_path.exists() else open(gz_path.with_suffix(""), "rb") as file:
        first = np.frombuffer(file.read(16 + 28 * 28)[16:], dtype=np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(mnist.val_images[0], first)


def test_verify_reports_all_ok(mnist: ImageSplits) -> None:
    reports = verify_dataset("mnist")
    assert len(reports) == 4
    assert all(report.ok for report in reports), [report.message for report in reports]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_load_split_equals_load_dataset(mnist: ImageSplits, split: str) -> None:
    loaded = load_split("mnist", split=split, download=False)
    images, labels = mnist.split(split)
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)
    assert loaded.labels.dtype == labels.dtype and loaded.images.dtype == images.dtype
    assert loaded.class_names == mnist.class_names and loaded.image_shape == (28, 28)


def test_test_split_without_training_files(mnist: ImageSplits, tmp_path: Path) -> None:
    """Evaluation's case: a folder holding only the test files, and no download allowed."""
    for stem in (TEST_IMAGES, TEST_LABELS):
        found = resolve_data_dir("mnist") / f"{stem}.gz"
        path = found if found.exists() else found.with_suffix("")
        shutil.copy(path, tmp_path / path.name)
    loaded = load_split("mnist", tmp_path, split="test", download=False)
    np.testing.assert_array_equal(loaded.labels, mnist.test_labels)
    assert len(loaded.images) == 10000
