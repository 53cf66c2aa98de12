"""A sweep's spec: a TOML file, checked whole before any trial starts.

    base = "default"           # a preset, or: config = "file.toml"
    metric = "val_accuracy"    # a run's summary field, maximised (losses and times minimised)
    trials = 24                # the budget in runs; a grid runs each point once per seed
    seeds = [0, 1, 2]
    pruner = "median"          # optional: stop poor runs early (none, median, hyperband)
    [require]                  # optional: bounds a run must meet to count as a result,
    val_accuracy = 0.99        #   at least for a field maximised, at most for one minimised
    [fixed]                    # overrides for every trial
    "train.epochs" = 3
    [grid]                     # or [sample]: lists, or {low, high, log, step} ranges
    "model.cell" = ["lstm", "gru"]

Keys are configuration fields as `seqmnist train` takes them ("train.lr",
"model.lstm.forget_bias" or the option names "lr", "lstm_forget_bias").
Every grid point, every listed choice and both ends of every range are
applied to the base configuration here, so a bad value is found now rather
than hours into the sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from seqmnist.config import (
    MAX_SEED,
    RunConfig,
    apply_overrides,
    field_type,
    load_toml,
    option_fields,
)
from seqmnist.errors import ConfigError
from seqmnist.presets import PRESETS, get_preset

# Summary fields a sweep may optimise, and which way is better. The test set picks
# nothing: its figures are reported, never chosen on.
METRICS = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "train_seconds": "minimize",
    "samples_per_second": "maximize",
    "params": "minimize",
}
PRUNERS = ("none", "median", "hyperband")
SAMPLERS = ("tpe", "random")
# A key of [grid] or [sample] (choices only): the preset each trial starts from.
PRESET = "preset"
KEYS = ("base", "config", "metric", "direction", "trials", "seeds", "pruner", "sampler",
        "require", "fixed", "grid", "sample")  # fmt: skip


@dataclass(frozen=True)
class Range:
    """A sampled number: uniform between low and high, or log-uniform; ints on a step."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False


@dataclass(frozen=True)
class SweepSpec:
    base: RunConfig
    base_name: str  # the preset's name, or the config file as written in the spec
    metric: str = "val_accuracy"
    direction: str = "maximize"
    trials: int | None = None  # None: every grid point for every seed
    seeds: tuple[int, ...] = (0,)
    pruner: str = "none"
    sampler: str = "tpe"
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    sample: dict[str, tuple[Any, ...] | Range] = field(default_factory=dict)
    # Bounds on summary fields: "the shortest training that reaches 99% validation".
    require: dict[str, float] = field(default_factory=dict)

    @property
    def is_grid(self) -> bool:
        return not self.sample

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in the order the spec lists them."""
        keys = list(self.grid)
        return [dict(zip(keys, values)) for values in itertools.product(*self.grid.values())]

    def budget(self) -> int:
        """How many runs the sweep makes at most."""
        if self.is_grid:
            every = len(self.grid_points()) * len(self.seeds)
            return every if self.trials is None else min(self.trials, every)
        assert self.trials is not None  # checked in load_spec
        # Each sampled configuration runs once per seed: the budget rounds up to whole ones.
        configurations = -(-self.trials // len(self.seeds))
        return configurations * len(self.seeds)

    def config_for(self, params: dict[str, Any], seed: int) -> RunConfig:
        """The configuration one trial trains: base, fixed, the trial's values, its seed.

        A "preset" value among them replaces the base: families compared each on
        its own tuned recipe.
        """
        values = dict(params)
        base = get_preset(values.pop(PRESET)) if PRESET in values else self.base
        return apply_overrides(base, {**self.fixed, **values, "train.seed": seed})

    def fingerprint(self) -> str:
        """What makes two specs the same sweep: a study is joined only with the same one."""
        text = json.dumps(
            {
                "base": self.base.to_dict(), "metric": self.metric, "direction": self.direction,
                "seeds": self.seeds, "pruner": self.pruner, "sampler": self.sampler,
                "fixed": self.fixed, "grid": self.grid, "require": self.require,
                "sample": {key: repr(value) for key, value in self.sample.items()},
            },
            sort_keys=True, default=str,
        )  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(path: Path | str) -> SweepSpec:
    """Read and check a spec file; any problem is one ConfigError naming the key."""
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep spec {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep spec {path} is a folder; give a TOML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"sweep spec {path} cannot be read: {getattr(error, 'strerror', error)}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"sweep spec {path} is not valid TOML: {error}") from None
    try:
        return parse_spec(values, path.parent)
    except ConfigError as error:
        raise ConfigError(f"sweep spec {path}: {error}") from None


def parse_spec(values: dict[str, Any], folder: Path = Path(".")) -> SweepSpec:
    """A spec from its TOML tables; ``folder`` is where a relative ``config`` path starts."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; a spec has {', '.join(KEYS)}")
    base, base_name = _base(values, folder)
    metric = values.get("metric", "val_accuracy")
    if metric not in METRICS:
        hint = (
            " (the test set picks nothing: choose on validation)"
            if str(metric).startswith("test")
            else ""
        )
        raise ConfigError(
            f"metric {metric!r} cannot be optimised{hint}; choose one of {', '.join(METRICS)}"
        )
    direction = values.get("direction", METRICS[metric])
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be maximize or minimize, got {direction!r}")
    fixed = _table(values, "fixed")
    grid = {key: _choices(key, value, "grid") for key, value in _table(values, "grid").items()}
    sample = {key: _sampled(key, value) for key, value in _table(values, "sample").items()}
    if grid and sample:
        raise ConfigError(
            "give [grid] or [sample], not both (a grid of sampled values has no order to run in)"
        )
    _check_keys(fixed, grid, sample)
    spec = SweepSpec(
        base=base, base_name=base_name, metric=metric, direction=direction,
        trials=_trials(values.get("trials"), bool(sample)), seeds=_seeds(values.get("seeds", [0])),
        pruner=_choice(values, "pruner", PRUNERS), sampler=_choice(values, "sampler", SAMPLERS),
        fixed=fixed, grid=grid, sample=sample, require=_require(values.get("require", {})),
    )  # fmt: skip
    _check_configs(spec)
    return spec


def _require(table: Any) -> dict[str, float]:
    if not isinstance(table, dict):
        raise ConfigError("[require] must be a table of summary fields and their bounds")
    for name, bound in table.items():
        if name not in METRICS:
            hint = " (the test set picks nothing)" if name.startswith("test") else ""
            raise ConfigError(
                f"[require] {name!r} is no field a run can be held to{hint}; "
                f"choose from {', '.join(METRICS)}"
            )
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or not math.isfinite(bound)
        ):
            raise ConfigError(f"[require] {name} must be a finite number, got {bound!r}")
    return {name: float(bound) for name, bound in table.items()}


def shortfalls(require: dict[str, float], values: dict[str, Any]) -> dict[str, float]:
    """How far a run's figures are from each bound: zero or less where one is met.

    A field the sweep would maximise is held to at least its bound (val_accuracy
    0.99), one it would minimise to at most (train_seconds 30). A missing figure
    misses by infinity.
    """
    gaps = {}
    for name, bound in require.items():
        value = values.get(name)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            gaps[name] = math.inf
        else:
            gaps[name] = bound - value if METRICS[name] == "maximize" else value - bound
    return gaps


def describe_requirement(name: str, bound: float) -> str:
    return f"{name} {'>=' if METRICS[name] == 'maximize' else '<='} {bound:g}"


def _base(values: dict[str, Any], folder: Path) -> tuple[RunConfig, str]:
    if "base" in values and "config" in values:
        raise ConfigError("give base (a preset) or config (a file), not both")
    if "config" in values:
        written = str(values["config"])
        path = Path(written) if Path(written).is_absolute() else folder / written
        return load_toml(path, get_preset("default")), written
    name = values.get("base", "default")
    if name not in PRESETS:
        raise ConfigError(f"base {name!r} is not a preset; `seqmnist presets` lists them")
    return get_preset(name), name


def _table(values: dict[str, Any], name: str) -> dict[str, Any]:
    table = values.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of configuration fields")
    canonical = {_canonical_key(key): value for key, value in table.items()}
    return {key: _plain(key, value) for key, value in canonical.items()}


def _canonical_key(key: str) -> str:
    """ "lr" and "train.lr" are one field: always named section.field in a sweep."""
    if key == PRESET:
        return key
    if "." not in key:
        known = option_fields()
        if key not in known:
            raise ConfigError(
                f"unknown configuration field {key!r}; `seqmnist train --help` lists them"
            )
        section, found = known[key]
        return f"{section}.{found.name}"
    return key  # a dotted key is checked when it is applied, in _check_configs


def _plain(key: str, value: Any) -> Any:
    # Optuna's choices must be plain scalars: a list of sizes is kept as "64,64".
    if (
        isinstance(value, list)
        and value
        and all(isinstance(i, int) for i in value)
        and _is_tuple(key)
    ):
        return ",".join(map(str, value))
    return value


def _is_tuple(key: str) -> bool:
    section, name = key.rsplit(".", 1)
    try:
        return getattr(field_type(section, name), "__origin__", None) is tuple
    except KeyError:
        return False


def _choices(key: str, value: Any, table: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"[{table}] {key!r} must be a non-empty list of values")
    choices = tuple(_plain(key, item) for item in value)
    if any(isinstance(item, (list, dict)) for item in choices):
        raise ConfigError(f"[{table}] {key!r} holds a list or table; give plain values")
    if len(set(map(repr, choices))) != len(choices):
        raise ConfigError(f"[{table}] {key!r} lists a value twice")
    return choices


def _sampled(key: str, value: Any) -> tuple[Any, ...] | Range:
    if isinstance(value, list):
        return _choices(key, value, "sample")
    if (
        not isinstance(value, dict)
        or not {"low", "high"} <= set(value)
        or set(value) - {"low", "high", "log", "step"}
    ):
        raise ConfigError(f"[sample] {key!r} must be a list of choices or {{low, high, log, step}}")
    low, high, log, step = value["low"], value["high"], value.get("log", False), value.get("step")
    section, name = key.rsplit(".", 1)
    integer = _field_kind(section, name, key) is int
    numbers = [low, high] + ([step] if step is not None else [])
    if not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n)
        for n in numbers
    ):
        raise ConfigError(f"[sample] {key!r}: low, high and step must be finite numbers")
    if integer and not all(float(n).is_integer() for n in numbers):
        raise ConfigError(f"[sample] {key!r} is a whole number: low, high and step must be too")
    if not low < high:
        raise ConfigError(f"[sample] {key!r}: low ({low}) must be below high ({high})")
    if not isinstance(log, bool):
        raise ConfigError(f"[sample] {key!r}: log must be true or false")
    if log and low <= 0:
        raise ConfigError(f"[sample] {key!r}: a log range needs low above 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"[sample] {key!r}: step must be above 0, and cannot go with log")
    return Range(low, high, log, step, integer)


def _field_kind(section: str, name: str, key: str) -> type:
    try:
        hint = field_type(section, name)
    except KeyError:
        raise ConfigError(f"unknown configuration field {key!r}") from None
    kinds = [kind for kind in (int, float) if kind is hint or kind in getattr(hint, "__args__", ())]
    if not kinds:
        raise ConfigError(f"[sample] {key!r} is not a number; list its choices instead")
    return kinds[0]


def _check_keys(fixed: dict[str, Any], *spaces: dict[str, Any]) -> None:
    if PRESET in fixed:
        raise ConfigError('a fixed preset is the spec\'s base: write base = "NAME"')
    for space in spaces:
        if isinstance(space.get(PRESET), Range):
            raise ConfigError("[sample] preset must be a list of presets")
    seen: dict[str, int] = {}
    for index, table in enumerate((fixed, *spaces)):
        for key in table:
            if key == "train.seed":
                raise ConfigError("the seed is not a field to sweep: list them in seeds = [...]")
            if key in seen:
                raise ConfigError(f"{key!r} is in two tables; a field is fixed, gridded or sampled")
            seen[key] = index


def _trials(value: Any, sampled: bool) -> int | None:
    if value is None:
        if sampled:
            raise ConfigError("a [sample] sweep needs trials = N, its budget in runs")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"trials must be a whole number of at least 1, got {value!r}")
    return value


def _seeds(value: Any) -> tuple[int, ...]:
    if (
        not isinstance(value, list) or not value
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in value)
    ):  # fmt: skip
        raise ConfigError(f"seeds must be a non-empty list of whole numbers from 0, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError("seeds lists a seed twice")
    return tuple(value)


def _choice(values: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = values.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _check_configs(spec: SweepSpec) -> None:
    """Apply every value the sweep can take to the base, so each is known to be valid."""

    def check(params: dict[str, Any], where: str) -> None:
        try:
            spec.config_for(params, spec.seeds[0])
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None

    check({}, "[fixed]")
    for point in spec.grid_points():
        check(point, f"[grid] point {point}")
    for key, space in spec.sample.items():
        values = (space.low, space.high) if isinstance(space, Range) else space
        for value in values:
            check({key: int(value) if isinstance(space, Range) and space.integer else value},
                  f"[sample] {key} = {value!r}")  # fmt: skip
