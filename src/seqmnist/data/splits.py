"""Checked splits: all three from a dataset's four arrays, or one from the pair it lives in."""

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
        split_source(name)  # raises for an unknown name
        return self.test_images, self.test_labels


@dataclass(frozen=True)
class LabeledSplit:
    """One split of a dataset: images (N, height, width) uint8, labels (N,) int64."""

    name: str  # the dataset's
    split: str  # "train", "val" or "test"
    class_names: tuple[str, ...]
    images: np.ndarray
    labels: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of every image (known even when the split is empty)."""
        height, width = self.images.shape[1:]
        return height, width

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


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
    _check_validation_size(validation_size)
    for files in (train, test):
        _check_pair(files)
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"{test.images_path}: test images are {test.images.shape[1:]} but training images "
            f"are {train.images.shape[1:]}; both must come from the same dataset"
        )
    class_names = _class_names(class_names, train, test)
    for files in (train, test):
        _check_label_range(files, len(class_names))
    (train_images, train_labels), (val_images, val_labels) = _hold_out(train, validation_size)
    return ImageSplits(
        name=name,
        class_names=class_names,
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        test_images=test.images,
        test_labels=test.labels.astype(np.int64),
    )


def split_source(split: str) -> str:
    """The pair of files ("train" or "test") that `split` is read from."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_NAMES)}")
    return "test" if split == "test" else "train"


def build_split(
    name: str,
    class_names: tuple[str, ...] | None,
    files: LabeledFiles,
    split: str,
    validation_size: int,
) -> LabeledSplit:
    """One split from the pair of files it lives in, checked as `build_splits` checks it.

    "val" is the first `validation_size` images of the training pair, "train" the
    rest. Without `class_names`, the classes are named "0".."max label" of this
    pair alone, which can be fewer than `build_splits` finds over both pairs.
    """
    pair = split_source(split)
    _check_validation_size(validation_size)
    _check_pair(files)
    class_names = _class_names(class_names, files)
    _check_label_range(files, len(class_names))
    if pair == "test":
        images, labels = files.images, files.labels.astype(np.int64)
    else:
        kept, held_out = _hold_out(files, validation_size)
        images, labels = kept if split == "train" else held_out
    return LabeledSplit(name, split, class_names, images, labels)


def _check_validation_size(validation_size: int) -> None:
    if validation_size < 0:
        raise ValueError(f"validation_size must be >= 0, got {validation_size}")


def _class_names(class_names: tuple[str, ...] | None, *pairs: LabeledFiles) -> tuple[str, ...]:
    """The given names, else "0".."max label" over `pairs`."""
    if class_names is not None:
        return class_names
    top = max(int(files.labels.max(initial=0)) for files in pairs)
    return tuple(str(label) for label in range(top + 1))


_Arrays = tuple[np.ndarray, np.ndarray]  # (images, labels)


def _hold_out(train: LabeledFiles, validation_size: int) -> tuple[_Arrays, _Arrays]:
    """((train images, labels), (validation images, labels)): validation comes FIRST."""
    if validation_size >= len(train.images):
        raise DataError(
            f"{train.images_path}: validation_size {validation_size} leaves no training images "
            f"out of {len(train.images)}; use a smaller validation_size"
        )
    labels = train.labels.astype(np.int64)
    kept = (train.images[validation_size:], labels[validation_size:])
    held_out = (train.images[:validation_size], labels[:validation_size])
    return kept, held_out


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
