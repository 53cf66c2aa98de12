"""Run directories: the one place that writes and reads config, weights and summary.

A run directory holds config.json (the resolved RunConfig), model.safetensors
(weights plus what they were trained to read, as metadata), metrics.jsonl and
summary.json. Everything that loads a trained model (eval, predict, export)
goes through ``load_run``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from seqmnist.config import ModelConfig, RunConfig
from seqmnist.errors import RunError, SeqmnistError
from seqmnist.files import atomic_write_bytes, atomic_write_json
from seqmnist.model import RecurrentClassifier

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


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

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> ModelInfo:
        height, width = json.loads(metadata["image_shape"])
        return cls((int(height), int(width)), tuple(json.loads(metadata["class_names"])))


def build_model(config: ModelConfig, info: ModelInfo) -> RecurrentClassifier:
    return RecurrentClassifier(config, info.image_shape, info.num_classes)


def save_weights(path: Path, model: torch.nn.Module, info: ModelInfo) -> None:
    tensors = {
        name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()
    }
    atomic_write_bytes(path, safetensors_bytes(tensors, info.to_metadata()))


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


def read_config(run_dir: Path) -> RunConfig:
    values = _read_json(run_dir / CONFIG_FILE)
    try:
        return RunConfig.from_dict(values)
    except SeqmnistError as error:
        raise RunError(f"{run_dir / CONFIG_FILE} is not a valid seqmnist config: {error}") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SUMMARY_FILE
    return _read_json(path) if path.exists() else None


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
            f"{weights_path} is missing; the run did not finish (train it again or resume it)"
        )
    state, info = read_weights(weights_path)
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
    except FileNotFoundError:
        raise RunError(f"{path} is missing; is {path.parent} a seqmnist run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is corrupt ({error}); train the run again") from None
