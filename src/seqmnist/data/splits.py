"""Checked train/validation/test splits built from a dataset's four arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqmnist.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class ImageSplits:
    """A dataset split three ways; images are (N, height, width) uint8, labels (N,) int64."""

    name: str
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image."""
        height, width = self.train_images.shape[1:]
        return height, width

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (images, labels) of split "train", "val" or "test"."""
        if name == "train":
            return self.train_images, self.train_labels
        if name == "val":
            return self.val_images, self.val_labels
        if name == "test":
            return self.test_images, self.test_labels
        raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLIT_NAMES)}")


@dataclass(frozen=True)
class LabeledFiles:
    """Images and labels as read from their files; the paths name them in errors."""

    images_path: Path
    images: np.ndarray
    labels_path: Path
    labels: np.ndarray


def build_splits(
    name: str,
    class_names: tuple[str, ...] | None,
    train: LabeledFiles,
    test: LabeledFiles,
    validation_size: int,
) -> ImageSplits:
    """Check the arrays agree and hold out the FIRST `validation_size` training images.

    Taking the first images (not a random draw) matches the old TensorFlow reader,
    so results stay comparable. Without `class_names`, the classes are named
    "0".."max label" over train and test.
    """
    if validation_size < 0:
        raise ValueError(f"validation_size must be >= 0, got {validation_size}")
    for files in (train, test):
        _check_pair(files)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{test.images_path}: test images are {test.images.shape[1:]} but training images "
            f"are {train.images.shape[1:]}; both must come from the same dataset"
        )
    if class_names is None:
        top = max(int(files.labels.max(initial=0)) for files in (train, test))
        class_names = tuple(str(label) for label in range(top + 1))
    for files in (train, test):
        _check_label_range(files, len(class_names))
    if validation_size >= len(train.images):
        raise DataError(
            f"{train.images_path}: validation_size {validation_size} leaves no training images "
            f"out of {len(train.images)}; use a smaller validation_size"
        )
    train_labels = train.labels.astype(np.int64)
    return ImageSplits(
        name=name,
        class_names=class_names,
        train_images=train.images[validation_size:],
        train_labels=train_labels[validation_size:],
        val_images=train.images[:validation_size],
        val_labels=train_labels[:validation_size],
        test_images=test.images,
        test_labels=test.labels.astype(np.int64),
    )


def _check_pair(files: LabeledFiles) -> None:
    images, labels = files.images, files.labels
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{files.images_path}: expected uint8 images shaped (count, height, width), found "
            f"{images.dtype} shaped {images.shape}; is this an image file?"
        )
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DataError(
            f"{files.labels_path}: expected integer labels shaped (count,), found "
            f"{labels.dtype} shaped {labels.shape}; is this a label file?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{files.labels_path}: {len(labels)} labels for the {len(images)} images in "
            f"{files.images_path.name}; the two files must belong together"
        )


def _check_label_range(files: LabeledFiles, num_classes: int) -> None:
    labels = files.labels
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{files.labels_path}: labels range over {labels.min()}..{labels.max()} but the "
            f"dataset has {num_classes} classes (0..{num_classes - 1}); is this the right file?"
        )
