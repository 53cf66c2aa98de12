"""Run configuration: frozen dataclasses that validate themselves.

The dataclass fields are the only place a default lives: presets replace
some of them, TOML files and command-line options replace more, and every
run writes the resolved result to its config.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from seqmnist.errors import ConfigError

VIEWS = ("rows", "columns", "pixels", "permuted")
CELLS = ("rnn", "lstm", "gru")
READOUTS = ("final", "last", "mean")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "onecycle")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
HEAD_INITS = ("default", "normal", "truncated_normal")


# The largest seed PyTorch's generators take as a signed 64-bit integer.
MAX_SEED = 2**63 - 1
# Bounds that keep a mistyped number from reaching the allocator or an overflow.
MAX_LAYER_WIDTH = 1_000_000
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10**10
MAX_THREADS = 1024
# The largest finite float32: a bias beyond it cannot be written into the weights.
FLOAT32_MAX = 3.4028234663852886e38


def _help(text: str, choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata: the option's help line, and its choices where it has a fixed set."""
    return {"help": text, "choices": choices}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = field(
        default="mnist",
        metadata=_help("mnist, fashion-mnist, or a folder holding the four IDX files"),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_help("folder with the dataset files (none: $SEQMNIST_DATA_DIR, else the cache)"),
    )
    validation_size: int = field(
        default=5000, metadata=_help("training images held out, taken from the front")
    )

    def __post_init__(self) -> None:
        _require(self.validation_size > 0, "validation_size must be a positive integer")


@dataclass(frozen=True)
class ModelConfig:
    view: str = field(default="rows", metadata=_help("how an image becomes a sequence", VIEWS))
    permutation_seed: int = field(
        default=0, metadata=_help("seed of the pixel order for the permuted view")
    )
    cell: str = field(default="lstm", metadata=_help("recurrent cell", CELLS))
    hidden_sizes: tuple[int, ...] = field(
        default=(128,), metadata=_help("units per layer, bottom first, e.g. 32,64")
    )
    bidirectional: bool = field(default=False, metadata=_help("read the sequence both ways"))
    readout: str = field(
        default="final",
        metadata=_help("what feeds the classifier (final: the final hidden state)", READOUTS),
    )
    forget_bias: float = field(default=1.0, metadata=_help("initial forget-gate bias (LSTM only)"))
    dropout: float = field(
        default=0.0, metadata=_help("dropout between layers and before the head")
    )
    head_init: str = field(
        default="default",
        metadata=_help("output layer init (the references used the last two)", HEAD_INITS),
    )

    def __post_init__(self) -> None:
        _require_choice("view", self.view, VIEWS)
        _require_choice("cell", self.cell, CELLS)
        _require_choice("readout", self.readout, READOUTS)
        _require_choice("head_init", self.head_init, HEAD_INITS)
        _require(len(self.hidden_sizes) > 0, "hidden_sizes needs at least one layer")
        _require(
            all(size > 0 for size in self.hidden_sizes),
            f"hidden_sizes must be positive integers, got {','.join(map(str, self.hidden_sizes))}",
        )
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        _require(
            math.isfinite(self.forget_bias) and abs(self.forget_bias) <= FLOAT32_MAX,
            f"forget_bias must be a finite number that fits in float32 (|x| <= {FLOAT32_MAX:.4g})",
        )
        _require(
            all(size <= MAX_LAYER_WIDTH for size in self.hidden_sizes),
            f"hidden_sizes must be at most {MAX_LAYER_WIDTH:,} units a layer",
        )
        _require_seed("permutation_seed", self.permutation_seed)


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = field(default="adamw", metadata=_help("optimizer", OPTIMIZERS))
    lr: float = field(default=3e-3, metadata=_help("peak learning rate"))
    weight_decay: float = field(default=0.0, metadata=_help("decoupled weight decay (adamw, sgd)"))
    momentum: float = field(default=0.9, metadata=_help("momentum (sgd only)"))
    schedule: str = field(default="none", metadata=_help("learning-rate schedule", SCHEDULES))
    warmup_fraction: float = field(
        default=0.1, metadata=_help("share of steps spent warming up (onecycle)")
    )
    grad_clip: float = field(
        default=1.0, metadata=_help("clip the gradient norm to this (0 = off); RNNs can explode")
    )
    epochs: float | None = field(
        default=10.0, metadata=_help("budget in passes over the data (set to none for another)")
    )
    steps: int | None = field(default=None, metadata=_help("budget in optimizer steps"))
    samples: int | None = field(default=None, metadata=_help("budget in training samples"))
    batch_size: int = field(default=128, metadata=_help("training batch size"))
    eval_batch_size: int = field(default=2000, metadata=_help("batch size for evaluation"))
    seed: int = field(default=0, metadata=_help("seed for weights, data order and dropout"))
    device: str = field(default="auto", metadata=_help("where to train", DEVICES))
    precision: str = field(
        default="auto",
        metadata=_help("matmul precision of training steps (auto: bf16 where fast)", PRECISIONS),
    )
    threads: int | None = field(
        default=None, metadata=_help("CPU threads (none: PyTorch's choice, one per core)")
    )
    log_every: int = field(default=50, metadata=_help("steps between batch-metric records"))
    tensorboard: bool = field(
        default=False,
        metadata=_help("also log the records to RUN/tensorboard (needs the tensorboard package)"),
    )
    checkpoint_every: int = field(
        default=500,
        metadata=_help("steps between checkpoints, besides each epoch end (0 = epoch ends only)"),
    )

    def __post_init__(self) -> None:
        _require_choice("optimizer", self.optimizer, OPTIMIZERS)
        _require_choice("schedule", self.schedule, SCHEDULES)
        _require_choice("device", self.device, DEVICES)
        _require_choice("precision", self.precision, PRECISIONS)
        _require(_positive(self.lr), f"lr must be a positive number, got {self.lr}")
        _require(
            self.weight_decay >= 0 and math.isfinite(self.weight_decay),
            "weight_decay must be a finite number >= 0",
        )
        _require(0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)")
        _require(0.0 <= self.warmup_fraction < 1.0, "warmup_fraction must be in [0, 1)")
        _require(self.grad_clip >= 0 and math.isfinite(self.grad_clip), "grad_clip must be >= 0")
        _require(self.batch_size > 0, f"batch_size must be positive, got {self.batch_size}")
        _require(self.eval_batch_size > 0, "eval_batch_size must be positive")
        _require(self.log_every > 0, "log_every must be positive")
        _require(self.checkpoint_every >= 0, "checkpoint_every must be >= 0 (0 = epoch ends only)")
        budgets = [b for b in (self.epochs, self.steps, self.samples) if b is not None]
        _require(len(budgets) == 1, "give exactly one budget: epochs, steps or samples")
        _require(_positive(budgets[0]), f"the training budget must be positive, got {budgets[0]}")
        _require(
            self.epochs is None or self.epochs <= MAX_EPOCHS,
            f"epochs must be at most {MAX_EPOCHS:,}",
        )
        _require(
            self.steps is None or self.steps <= MAX_STEPS, f"steps must be at most {MAX_STEPS:.0e}"
        )
        _require(
            self.samples is None or self.samples <= MAX_STEPS * self.batch_size,
            f"samples must be at most {MAX_STEPS:.0e} batches",
        )
        _require_seed("seed", self.seed)
        _require(
            self.threads is None or 1 <= self.threads <= MAX_THREADS,
            f"threads must be between 1 and {MAX_THREADS}, got {self.threads}",
        )

    def total_steps(self, train_size: int) -> int:
        """Optimizer steps the budget allows on a training set of this size."""
        if self.steps is not None:
            return self.steps
        if self.samples is not None:
            return max(1, math.ceil(self.samples / self.batch_size))
        # An epoch is the full batches of one pass: the short remainder is dropped.
        steps_per_epoch = max(1, train_size // self.batch_size)
        return max(1, math.ceil(self.epochs * steps_per_epoch))


@dataclass(frozen=True)
class RunConfig:
    name: str = "custom"
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from nested plain values (config.json); unknown keys are errors."""
        if not isinstance(values, dict):
            raise ConfigError(
                f"a configuration must be a table of settings, not {type(values).__name__}"
            )
        return apply_overrides(cls(), _flatten(values))


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
TOP_LEVEL = ("name", "description")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _require_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _require_seed(name: str, value: int) -> None:
    _require(0 <= value <= MAX_SEED, f"{name} must be between 0 and 2**63 - 1, got {value}")


def _positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def option_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every settable field as {field name: (section, field)}; names are unique."""
    fields: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f.name not in fields, f"field name {f.name} is not unique across sections"
            fields[f.name] = (section, f)
    return fields


def field_type(section: str, name: str) -> Any:
    return typing.get_type_hints(SECTIONS[section])[name]


def parse_value(section: str, name: str, raw: Any) -> Any:
    """Convert a TOML or command-line value to the field's type."""
    hint = field_type(section, name)
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", "")):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        return _convert(hint, raw)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} got {raw!r}, which is not a valid {_type_name(hint)}") from None


def _convert(hint: Any, raw: Any) -> Any:
    if typing.get_origin(hint) is tuple:
        items = raw.split(",") if isinstance(raw, str) else list(raw)
        return tuple(_to_int(item) for item in items)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        lowered = str(raw).lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(raw)
        return lowered in ("true", "1", "yes")
    if hint is int:
        return _to_int(raw)
    if hint is float:
        if isinstance(raw, bool):
            raise ValueError(raw)
        return float(raw)
    return str(raw)


def _to_int(raw: Any) -> int:
    """A whole number from text or a number; True, 1.5, inf and lists are refused."""
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ValueError(raw)  # is_integer() is False for NaN and infinities too
    if not isinstance(raw, (int, float, str)):
        raise TypeError(raw)
    return int(raw)


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "comma-separated list of integers"
    return getattr(hint, "__name__", str(hint))


def apply_overrides(base: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Replace fields given as {field name or section.field: value}; unknown keys are errors."""
    known = option_fields()
    sections = {name: {} for name in SECTIONS}
    top: dict[str, Any] = {}
    for key, raw in overrides.items():
        name = key.rsplit(".", 1)[-1]
        if name in TOP_LEVEL and "." not in key:
            top[name] = str(raw)
            continue
        if name not in known or ("." in key and key.split(".")[0] != known[name][0]):
            raise ConfigError(f"unknown option {key!r}; `seqmnist train --help` lists them")
        section = known[name][0]
        sections[section][name] = parse_value(section, name, raw)
    train_fields = sections["train"]
    if {"epochs", "steps", "samples"} & train_fields.keys():
        # A new budget replaces the preset's, whichever kind it was.
        for budget in ("epochs", "steps", "samples"):
            train_fields.setdefault(budget, None)
    return dataclasses.replace(
        base,
        **top,
        **{
            section: dataclasses.replace(getattr(base, section), **values)
            for section, values in sections.items()
            if values
        },
    )


def _flatten(values: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of options")
            flat.update({f"{key}.{name}": inner for name, inner in value.items()})
        elif key in TOP_LEVEL:
            flat[key] = value
        else:
            raise ConfigError(
                f"unknown config key {key!r}; expected {TOP_LEVEL} or {tuple(SECTIONS)}"
            )
    return flat


def load_toml(path: Path, base: RunConfig) -> RunConfig:
    """Apply a config file on top of ``base``: TOML ([data], [model], [train] tables), or
    a run's config.json (the same tables as JSON), so a run can be trained again as it was.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a TOML file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ConfigError(f"config file {path} cannot be read: {reason}") from None
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"config file {path} is not valid {kind}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a table of [data], [model], [train]")
    return apply_overrides(base, _flatten(values))
