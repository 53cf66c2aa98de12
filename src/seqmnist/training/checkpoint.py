"""Training checkpoints: the full state of a run, written atomically, read back verified.

A checkpoint is a pair of files in ``RUN/checkpoints/``:

- ``step-00000123.safetensors``: every tensor (weights, best weights, optimizer
  moments, random-generator states, the epoch's running loss); no pickle.
- ``step-00000123.json``: everything else (step, position in the epoch, schedule,
  best metrics, the run's configuration), the size and sha256 of the tensor
  file, and the sha256 of its own content.

The tensor file is written first and the JSON last, each atomically, so a save
cut short at any point leaves the previous checkpoint as the newest complete
one. A checkpoint is used only if both files parse, both checksums match and it
was written for this run's configuration; anything else is a RunError naming
the file, and resuming falls back to the previous checkpoint. The newest two
are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors

from seqmnist.config import RunConfig
from seqmnist.errors import RunError
from seqmnist.files import atomic_write_bytes
from seqmnist.runs import CHECKPOINT_DIR, safetensors_bytes

logger = logging.getLogger("seqmnist.train")

FORMAT = "seqmnist-checkpoint"
VERSION = 1
KEEP = 2
_NAME = re.compile(r"step-(\d{8})\.json")
# Markers for what JSON cannot say itself: a tensor stored in the tensor file,
# a tuple, and a dict whose keys are not strings (the optimizer's parameter ids).
_TENSOR, _TUPLE, _ITEMS = "$tensor", "$tuple", "$items"


@dataclass(frozen=True)
class Checkpoint:
    path: Path  # the JSON file
    step: int
    state: dict[str, Any]  # as given to save, tensors on the CPU


class CheckpointStore:
    """Writes and reads the checkpoints of one run, checked against its configuration.

    ``model_shapes`` (parameter name -> shape) lets a checkpoint whose weights do
    not fit the model be rejected on reading rather than when they are loaded.
    """

    def __init__(
        self, run_dir: Path, config: RunConfig, model_shapes: dict[str, tuple[int, ...]]
    ) -> None:
        self.run_dir = Path(run_dir)
        self.directory = self.run_dir / CHECKPOINT_DIR
        self.config = _plain(config.to_dict())
        self.model_shapes = {name: list(shape) for name, shape in model_shapes.items()}

    def path_for(self, step: int) -> Path:
        """The JSON file of the checkpoint at ``step``."""
        return self.directory / f"step-{step:08d}.json"

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write ``state`` (plain values and tensors) as the checkpoint of ``step``."""
        tensors: dict[str, torch.Tensor] = {}
        encoded = _encode(state, "", tensors)
        data = safetensors_bytes(tensors)
        json_path = self.path_for(step)
        tensor_path = json_path.with_suffix(".safetensors")
        self.directory.mkdir(exist_ok=True)
        atomic_write_bytes(tensor_path, data)
        body = {
            "format": FORMAT,
            "version": VERSION,
            "step": step,
            "tensors_bytes": len(data),
            "tensors_sha256": hashlib.sha256(data).hexdigest(),
            "config": self.config,
            "state": encoded,
        }
        try:
            atomic_write_bytes(json_path, _render({**body, "sha256": _digest(body)}))
        except BaseException:
            tensor_path.unlink(missing_ok=True)  # no orphan: the previous checkpoint stays newest
            raise
        self._prune(just_written=tensor_path.name)
        return json_path

    def read(self, json_path: Path) -> Checkpoint:
        """One checkpoint, verified; any problem is a RunError naming the file and saying what."""
        json_path = Path(json_path)
        body = self._read_body(json_path)
        step = body["step"]
        tensor_path = json_path.with_suffix(".safetensors")
        data = _read_bytes(tensor_path)
        if len(data) != body["tensors_bytes"]:
            raise RunError(
                f"{tensor_path} is truncated or damaged: {len(data)} bytes where "
                f"{json_path.name} records {body['tensors_bytes']}"
            )
        if hashlib.sha256(data).hexdigest() != body["tensors_sha256"]:
            raise RunError(
                f"{tensor_path} is damaged: its sha256 does not match the one in {json_path.name}"
            )
        try:
            tensors = load_tensors(data)
            state = _decode(body["state"], tensors)
        except (SafetensorError, KeyError, TypeError, ValueError) as error:
            raise RunError(f"{tensor_path} is not a readable checkpoint ({error})") from None
        self._check_shapes(json_path, state)
        return Checkpoint(json_path, step, state)

    def latest(self) -> Checkpoint:
        """The newest checkpoint that reads back intact, falling back (with a warning) past bad ones."""
        paths = self.paths()
        if not paths:
            raise RunError(
                f"{self.run_dir} has no checkpoint to resume from (no {CHECKPOINT_DIR}/step-*.json); "
                "it stopped before its first checkpoint"
            )
        problems = []
        for path in reversed(paths):
            try:
                checkpoint = self.read(path)
            except RunError as error:
                problems.append(str(error))
                logger.warning("%s; trying the previous checkpoint", error)
                continue
            if problems:
                logger.warning("resuming from the previous good checkpoint, %s", path)
                self._set_aside_newer_than(checkpoint.step)
            return checkpoint
        raise RunError(
            f"no usable checkpoint in {self.directory}: "
            + "; ".join(problems)
            + "; train it again with --overwrite"
        )

    def paths(self) -> list[Path]:
        """The checkpoints' JSON files, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if _NAME.fullmatch(p.name))

    def clear(self) -> None:
        """Remove every checkpoint (a fresh run must never resume an older one's)."""
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith(("step-", ".step-")):
                    path.unlink()

    def _read_body(self, json_path: Path) -> dict[str, Any]:
        raw = _read_bytes(json_path)
        if not raw:
            raise RunError(f"{json_path} is empty (truncated)")
        try:
            text = raw.decode("utf-8")
            document = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RunError(
                f"{json_path} is truncated or damaged (not valid JSON: {error})"
            ) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise RunError(f"{json_path} is not a seqmnist checkpoint")
        claimed = document.pop("sha256", None)
        # Rendering back must give the same bytes, so no byte of the file can change unnoticed.
        if _render({**document, "sha256": claimed}) != raw or claimed != _digest(document):
            raise RunError(f"{json_path} is truncated or damaged: its checksum does not match")
        if document.get("version") != VERSION:
            raise RunError(
                f"{json_path} has checkpoint format version {document.get('version')}; "
                f"this seqmnist reads version {VERSION}"
            )
        if not (
            isinstance(document.get("step"), int)
            and isinstance(document.get("tensors_bytes"), int)
            and isinstance(document.get("tensors_sha256"), str)
            and isinstance(document.get("config"), dict)
            and isinstance(document.get("state"), dict)
        ):
            raise RunError(f"{json_path} is not a seqmnist checkpoint (fields missing or wrong)")
        differences = _differences(_comparable(document["config"]), _comparable(self.config))
        if differences:
            raise RunError(
                f"{json_path} was written by a different configuration than "
                f"{self.run_dir / 'config.json'} ({'; '.join(differences[:3])})"
            )
        named = _NAME.fullmatch(json_path.name)
        if named is not None and int(named.group(1)) != document["step"]:
            raise RunError(
                f"{json_path} holds step {document['step']}, not the step in its name; "
                "it was renamed or copied from elsewhere"
            )
        return document

    def _check_shapes(self, json_path: Path, state: dict[str, Any]) -> None:
        for key, weights in (("model", state.get("model")), ("best", state.get("best_model"))):
            if key == "best" and not weights:
                continue  # no epoch has ended yet, so there are no best weights
            shapes = {name: list(t.shape) for name, t in (weights or {}).items()}
            if shapes != self.model_shapes:
                raise RunError(f"{json_path} holds {key} weights that do not fit this run's model")

    def _prune(self, just_written: str) -> None:
        """Keep the newest KEEP checkpoints; drop older ones and leftovers of cut-short saves."""
        complete = self.paths()
        for path in complete[:-KEEP]:
            path.unlink()  # the JSON first: a half-deleted checkpoint is never taken as whole
            path.with_suffix(".safetensors").unlink(missing_ok=True)
        kept = {path.with_suffix(".safetensors").name for path in complete[-KEEP:]}
        for path in self.directory.iterdir():
            leftover = path.name.startswith(".step-") and path.name.endswith(".tmp")
            orphan = path.suffix == ".safetensors" and path.name not in kept
            if leftover or (orphan and path.name != just_written):
                path.unlink(missing_ok=True)

    def _set_aside_newer_than(self, step: int) -> None:
        # Resuming redoes the steps after ``step``: damaged later checkpoints are renamed
        # (kept to inspect) so they are never read again.
        for path in self.paths():
            if int(_NAME.fullmatch(path.name).group(1)) > step:
                for part in (path, path.with_suffix(".safetensors")):
                    if part.exists():
                        part.rename(part.with_name(part.name + ".bad"))
                logger.warning("set aside %s as %s.bad", path, path.name)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except OSError as error:
        raise RunError(f"{path} cannot be read: {error.strerror or error}") from None


def _render(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _plain(value: Any) -> Any:
    """As JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def _comparable(config: Any) -> Any:
    # Where the data files live may change between machines; nothing else may.
    if isinstance(config, dict) and isinstance(config.get("data"), dict):
        config = {**config, "data": {k: v for k, v in config["data"].items() if k != "data_dir"}}
    return config


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        # A setting one side lacks was added or removed between versions; config.json,
        # read with today's defaults, already decides it.
        for key in sorted(saved.keys() & current.keys()):
            found += _differences(saved[key], current[key], f"{prefix}{key}.")
        return found
    if saved != current:
        return [f"{prefix.rstrip('.')} {json.dumps(saved)} there, {json.dumps(current)} here"]
    return []


def _encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Plain JSON, with every tensor moved into ``tensors`` under its path (e.g. optimizer/state/0/exp_avg)."""
    if isinstance(value, torch.Tensor):
        assert name not in tensors, f"two tensors at {name}"
        tensors[name] = value.detach().cpu().contiguous()
        return {_TENSOR: name}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: _encode(item, _join(name, key), tensors) for key, item in value.items()}
        assert all(isinstance(key, (int, str)) for key in value), f"odd keys at {name}"
        return {
            _ITEMS: [[key, _encode(item, _join(name, key), tensors)] for key, item in value.items()]
        }
    if isinstance(value, (list, tuple)):
        items = [_encode(item, _join(name, index), tensors) for index, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {name})")


def _join(name: str, key: Any) -> str:
    return f"{name}/{key}" if name else str(key)


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_decode(item, tensors) for item in value[_TUPLE])
        if _ITEMS in value:
            return {key: _decode(item, tensors) for key, item in value[_ITEMS]}
        return {key: _decode(item, tensors) for key, item in value.items()}
    return value
