"""Run directories: the one place that writes and reads config, weights and summary.

A run directory holds config.json (the resolved RunConfig), model.safetensors
(weights plus what they were trained to read, as metadata), metrics.jsonl and
summary.json. Everything that loads a trained model (eval, predict, export)
goes through ``load_run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from seqmnist.config import ModelConfig, RunConfig
from seqmnist.data import load_split
from seqmnist.data.datasets import DATA_DIR_ENV
from seqmnist.errors import ConfigError, DataError, RunError, SeqmnistError, StorageError
from seqmnist.files import (
    atomic_write_bytes,
    atomic_write_json,
    check_creatable_folder,
    describe_write_error,
)
from seqmnist.model import RecurrentClassifier

logger = logging.getLogger("seqmnist")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
# Everything a run and the commands that work on it write inside its folder:
# what --overwrite removes. Other files in the folder are the user's and stay.
RUN_OUTPUTS = (
    CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_DIR, "tensorboard", "plots",
    "model.onnx",
)  # fmt: skip
# Weights, gradients and two Adam moments, in fp32: the least training needs per parameter.
TRAINING_BYTES_PER_PARAMETER = 16


@dataclass(frozen=True)
class ModelInfo:
    """What a model was trained to read: image size and the classes it names."""

    image_shape: tuple[int, int]
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        # safetensors metadata holds strings only.
        return {
            "image_shape": json.dumps(list(self.image_shape)),
            "class_names": json.dumps(list(self.class_names)),
        }

    def check_data(self, images, labels, where: str) -> None:
        """Refuse data this model cannot read: another image size, or labels past its classes."""
        if tuple(images.shape[1:]) != self.image_shape:
            height, width = self.image_shape
            raise DataError(
                f"{where} holds {images.shape[1]}x{images.shape[2]} images, but the model was "
                f"trained on {height}x{width}; give the dataset it was trained on (--data-dir)"
            )
        if len(labels) and int(labels.max()) >= self.num_classes:
            raise DataError(
                f"{where} has label {int(labels.max())}, but the model knows {self.num_classes} "
                "classes; give the dataset it was trained on (--data-dir)"
            )

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ModelInfo:
        height, width = json.loads(metadata["image_shape"])
        return cls((int(height), int(width)), tuple(json.loads(metadata["class_names"])))


def build_model(config: ModelConfig, info: ModelInfo) -> RecurrentClassifier:
    """The model ``config`` describes, once it is known to fit in this machine's memory."""
    check_model_fits(config, info)
    return RecurrentClassifier(config, info.image_shape, info.num_classes)


def check_model_fits(config: ModelConfig, info: ModelInfo) -> int:
    """The parameter count, counted on the meta device (nothing is allocated).

    A model whose training state would not fit in memory is a ConfigError
    before a byte is allocated, not a crash in the allocator.
    """
    try:
        with torch.device("meta"):
            probe = RecurrentClassifier(config, info.image_shape, info.num_classes)
        parameters = sum(parameter.numel() for parameter in probe.parameters())
    except (RuntimeError, OverflowError, ValueError) as error:
        raise ConfigError(
            f"this model cannot be built: {error}; choose smaller --hidden-sizes"
        ) from None
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    available = _memory_bytes()
    if available is not None and needed > available:
        raise ConfigError(
            f"the model has {parameters:,} parameters, needing at least {needed / 2**30:,.1f} GiB "
            f"to train, more than this machine's {available / 2**30:,.1f} GiB; choose smaller "
            "--hidden-sizes"
        )
    return parameters


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not every platform has these names
        return None


def save_weights(path: Path, model: torch.nn.Module, info: ModelInfo) -> str:
    """Write the weights atomically; returns the file's sha256, for summary.json."""
    tensors = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    data = safetensors_bytes(tensors, info.to_metadata())
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def safetensors_bytes(
    tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> bytes:
    """A safetensors file's bytes; equal tensors and metadata always give equal bytes.

    safetensors writes the metadata in hash-map order, which changes from one
    process to the next; the header is rewritten with it sorted.
    """
    data = save(tensors, metadata=metadata)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > length:  # not expected: the same content in another order
        return data
    # The header keeps its length (padded with spaces, as safetensors pads), so the
    # tensor offsets that follow it stay right.
    return data[:8] + text.ljust(length, b" ") + data[8 + length :]


def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())


def check_new_run_dir(run_dir: Path, overwrite: bool = False) -> None:
    """Refuse a folder a new run must not write into, saying what to do instead.

    A run folder is never replaced by accident: one holding anything is refused
    unless ``overwrite`` is given and it holds a seqmnist run.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"--out {run_dir} is a file, not a folder; choose another --out")
    check_creatable_folder(run_dir)  # under a file, or somewhere that takes no files
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    quoted = shlex.quote(str(run_dir))
    if not holds_run(run_dir):
        raise RunError(
            f"--out {run_dir} already holds files that are not a seqmnist run; choose an empty "
            "or new folder"
        )
    if overwrite:
        return
    if (run_dir / SUMMARY_FILE).is_file():
        raise RunError(
            f"{run_dir} holds a finished run; evaluate it with `seqmnist eval {quoted}`, or "
            "train it again from scratch with --overwrite (deletes its weights and checkpoints)"
        )
    raise RunError(
        f"{run_dir} holds a run that did not finish; continue it with `seqmnist train --resume "
        f"{quoted}`, or start over with --overwrite (deletes its checkpoints)"
    )


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a seqmnist run: a config.json that reads as one."""
    try:
        read_config(run_dir)
    except RunError:
        return False
    return True


def make_run_dir(run_dir: Path, config: RunConfig, overwrite: bool = False) -> None:
    """Create (or, with ``overwrite``, empty of a previous run's outputs) and write config.json."""
    check_new_run_dir(run_dir, overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RUN_OUTPUTS:
            path = run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    except OSError as error:
        raise StorageError(describe_write_error(run_dir, error)) from None
    write_config(run_dir, config)


def weights_damage(run_dir: Path) -> str | None:
    """What is wrong with RUN/model.safetensors, judged by summary.json's checksum; None if fine.

    A run from before checksums were recorded has nothing to compare with and
    counts as fine; one with no summary.json has not finished (see load_run).
    """
    weights_path = run_dir / WEIGHTS_FILE
    try:
        summary = read_summary(run_dir)
    except RunError:
        return None
    expected = ((summary or {}).get("checksums") or {}).get(WEIGHTS_FILE)
    if expected is None or not weights_path.is_file():
        return None
    try:
        actual = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    except OSError as error:
        return f"{weights_path} cannot be read ({error.strerror or error})"
    if actual != expected:
        return f"{weights_path} is damaged: its sha256 does not match the one in {SUMMARY_FILE}"
    return None


def repair_hint(run_dir: Path) -> str:
    """What to do about damaged weights: resume from a checkpoint if there is one, else retrain."""
    quoted = shlex.quote(str(run_dir))
    if any((run_dir / CHECKPOINT_DIR).glob("step-*.json")):
        return f"rewrite it from the last checkpoint with `seqmnist train --resume {quoted}`"
    config = shlex.quote(str(run_dir / CONFIG_FILE))
    return (
        f"train the run again with its settings: "
        f"`seqmnist train --config {config} --out {quoted} --overwrite`"
    )


def read_config(run_dir: Path) -> RunConfig:
    values = _read_json(run_dir / CONFIG_FILE)
    train = values.get("train") if isinstance(values, dict) else None
    if isinstance(train, dict) and "compile" not in train:
        # A run from before --compile trained eagerly: resumed, it goes on so.
        values = {**values, "train": {**train, "compile": "off"}}
    try:
        return RunConfig.from_dict(values)
    except SeqmnistError as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is not a valid seqmnist config: {error}") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """summary.json's object, None if the run has none yet; anything else is a RunError."""
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        return None
    summary = _read_json(path)
    checksums = summary.get("checksums", {}) if isinstance(summary, dict) else None
    if not isinstance(checksums, dict) or not all(
        isinstance(value, str) for value in checksums.values()
    ):
        raise RunError(f"{path} is not a seqmnist summary; {repair_hint(run_dir)}")
    return summary


@dataclass
class LoadedRun:
    directory: Path
    config: RunConfig
    info: ModelInfo
    model: RecurrentClassifier
    summary: dict[str, Any] | None


def load_run(run_dir: Path | str, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild a trained model from its run directory, in eval mode on ``device``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(
            f"run directory {run_dir} does not exist; give the --out folder of a training run"
        )
    config = read_config(run_dir)
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.exists():
        raise RunError(
            f"{weights_path} is missing; the run did not finish: continue it with "
            f"`seqmnist train --resume {shlex.quote(str(run_dir))}`"
        )
    if not (run_dir / SUMMARY_FILE).is_file():
        # Weights without the summary that records their checksum: the run stopped while
        # finishing. Resuming finishes it (and writes both).
        raise RunError(
            f"{run_dir} has not finished (no {SUMMARY_FILE}); finish it with "
            f"`seqmnist train --resume {shlex.quote(str(run_dir))}`"
        )
    if (damage := weights_damage(run_dir)) is not None:
        raise RunError(f"{damage}; {repair_hint(run_dir)}")
    try:
        state, info = read_weights(weights_path)
    except RunError as error:
        raise RunError(f"{error}; {repair_hint(run_dir)}") from None
    model = build_model(config.model, info)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1].strip()
        raise RunError(
            f"{weights_path} does not match {run_dir / CONFIG_FILE}: {first_line}"
        ) from None
    model.to(device).eval()
    return LoadedRun(run_dir, config, info, model, read_summary(run_dir))


def run_split(run: LoadedRun, split: str, data_dir: str | None = None):
    """A split of the run's dataset (only its own files are read), checked against the model."""
    data = run.config.data
    folder = data_dir or data.data_dir or _training_folder(run)
    loaded = load_split(data.dataset, folder, data.validation_size, split)
    run.info.check_data(loaded.images, loaded.labels, f"the {split} split of {data.dataset}")
    return loaded


def _training_folder(run: LoadedRun) -> str | None:
    """Where the run found its data, when nothing says where to look now.

    A run trained with $SEQMNIST_DATA_DIR set (as `make train` sets it) records
    the folder, so a later `seqmnist eval` in a shell without the variable reads
    the same files instead of looking in the cache and downloading.
    """
    if os.environ.get(DATA_DIR_ENV):
        return None
    folder = (run.summary or {}).get("data_folder")
    return folder if isinstance(folder, str) and Path(folder).is_dir() else None


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], ModelInfo]:
    """Tensors and model info from a safetensors file; any corruption is a RunError."""
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            info = ModelInfo.from_metadata(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"{path} is not a readable seqmnist weights file ({error})") from None
    return state, info


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise RunError(f"{path} is missing; is {path.parent} a seqmnist run directory?") from None
    except OSError as error:
        raise RunError(f"{path} cannot be read ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupt ({error}); train the run again") from None
