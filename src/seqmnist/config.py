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
from seqmnist.model.options import (
    CELLS,
    CoRNNOptions,
    IndRNNOptions,
    LEMOptions,
    LRUOptions,
    LSTMOptions,
)

VIEWS = ("rows", "columns", "pixels", "permuted")
READOUTS = ("final", "last", "mean")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "cosine", "onecycle", "step")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")
COMPILE_CHOICES = ("auto", "on", "off")
HEAD_INITS = ("default", "normal", "truncated_normal")


# The largest seed PyTorch's generators take as a signed 64-bit integer.
MAX_SEED = 2**63 - 1
# Bounds that keep a mistyped number from reaching the allocator or an overflow.
MAX_LAYER_WIDTH = 1_000_000
MAX_EPOCHS = 1_000_000
MAX_STEPS = 10**10
MAX_THREADS = 1024


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
    dropout: float = field(
        default=0.0, metadata=_help("dropout between layers and before the head")
    )
    head_init: str = field(
        default="default",
        metadata=_help("output layer init (the references used the last two)", HEAD_INITS),
    )
    # Each family's own settings: a [model.NAME] table in TOML, --NAME-SETTING options.
    lstm: LSTMOptions = field(default_factory=LSTMOptions)
    lru: LRUOptions = field(default_factory=LRUOptions)
    cornn: CoRNNOptions = field(default_factory=CoRNNOptions)
    lem: LEMOptions = field(default_factory=LEMOptions)
    indrnn: IndRNNOptions = field(default_factory=IndRNNOptions)

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
    decay_at: float = field(
        default=0.75,
        metadata=_help(
            "share of the budget after which the step schedule multiplies the lr (step)"
        ),
    )
    decay_factor: float = field(
        default=0.1, metadata=_help("what the step schedule multiplies the lr by (step)")
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
    compile: str = field(
        default="auto",
        metadata=_help(
            "run training steps through torch.compile (auto: where it pays, see BENCHMARKS.md)",
            COMPILE_CHOICES,
        ),
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
        _require_choice("compile", self.compile, COMPILE_CHOICES)
        _require(_positive(self.lr), f"lr must be a positive number, got {self.lr}")
        _require(
            self.weight_decay >= 0 and math.isfinite(self.weight_decay),
            "weight_decay must be a finite number >= 0",
        )
        _require(0.0 <= self.momentum < 1.0, "momentum must be in [0, 1)")
        _require(0.0 <= self.warmup_fraction < 1.0, "warmup_fraction must be in [0, 1)")
        _require(0.0 < self.decay_at < 1.0, f"decay_at must be in (0, 1), got {self.decay_at}")
        _require(
            0.0 < self.decay_factor <= 1.0,
            f"decay_factor must be in (0, 1], got {self.decay_factor}",
        )
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


# Every table of settings by its path: the three sections, and each family's own
# within the model section ("model.lstm" is the [model.lstm] table).
SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    **{
        f"model.{f.name}": f.default_factory
        for f in dataclasses.fields(ModelConfig)
        if f.default_factory is not dataclasses.MISSING
    },
}
TOP_LEVEL = ("name", "description")
# Settings that moved: the old key (in config.json files of earlier runs) -> the new one.
MOVED = {"model.forget_bias": "model.lstm.forget_bias"}


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
    """Every setting as {option name: (section path, field)}; option names are unique.

    A family's setting is named after the family: ``lstm_forget_bias`` is
    ``forget_bias`` in [model.lstm], and the command line's --lstm-forget-bias.
    """
    fields: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in SECTIONS.items():
        prefix = section.split(".", 1)[1] + "_" if "." in section else ""
        for f in dataclasses.fields(cls):
            if f"{section}.{f.name}" in SECTIONS:
                continue  # a family's table, listed by its own fields
            name = prefix + f.name
            assert name not in fields, f"option name {name} is not unique across sections"
            fields[name] = (section, f)
    return fields


def field_type(section: str, name: str) -> Any:
    """The type of field ``name`` (its field name, or its option name) in ``section``."""
    return typing.get_type_hints(SECTIONS[section])[_field_name(section, name)]


def _field_name(section: str, name: str) -> str:
    prefix = section.split(".", 1)[1] + "_" if "." in section else ""
    return name[len(prefix) :] if prefix and name.startswith(prefix) else name


def setting(config: RunConfig, section: str, name: str) -> Any:
    """The value of a setting, e.g. ``setting(config, "model.lstm", "forget_bias")``."""
    value: Any = config
    for part in section.split("."):
        value = getattr(value, part)
    return getattr(value, _field_name(section, name))


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
    """Replace settings given as {option name or section.field: value}; unknown keys are errors."""
    known = option_fields()
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    top: dict[str, Any] = {}
    for key, raw in overrides.items():
        key = MOVED.get(key, key)
        if key in TOP_LEVEL:
            top[key] = str(raw)
            continue
        section, name = _locate(key, known)
        values[section][_field_name(section, name)] = parse_value(section, name, raw)
    train_fields = values["train"]
    if {"epochs", "steps", "samples"} & train_fields.keys():
        # A new budget replaces the preset's, whichever kind it was.
        for budget in ("epochs", "steps", "samples"):
            train_fields.setdefault(budget, None)
    # Families' tables first, so the model section is rebuilt with them.
    model_values = values["model"]
    for section in SECTIONS:
        if section.startswith("model.") and values[section]:
            family = section.split(".", 1)[1]
            model_values[family] = dataclasses.replace(
                getattr(base.model, family), **values[section]
            )
    return dataclasses.replace(
        base,
        **top,
        **{
            section: dataclasses.replace(getattr(base, section), **values[section])
            for section in ("data", "model", "train")
            if values[section]
        },
    )


def _locate(key: str, known: dict[str, tuple[str, dataclasses.Field]]) -> tuple[str, str]:
    """(section, option name) for an option name or a dotted section.field key."""
    if "." in key:
        section, name = key.rsplit(".", 1)
        fields = (
            {f.name for f in dataclasses.fields(SECTIONS.get(section, object))}
            if section in SECTIONS
            else set()
        )
        if name in fields and f"{section}.{name}" not in SECTIONS:
            return section, name
    elif key in known:
        return known[key][0], key
    raise ConfigError(f"unknown option {key!r}; `seqmnist train --help` lists them")


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables ({"model": {"lstm": {...}}}) as {"model.lstm.forget_bias": ...}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        path = prefix + key
        if path in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{path}] must be a table of options")
            flat.update(_flatten(value, path + "."))
        elif prefix:
            flat[path] = value
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
