"""Presets: typed functions returning a run configuration, by name.

``references`` holds seqmnist's default and the five reference programs;
``families`` a row, pixel and permuted recipe per recurrent family, with
what each paper reports. ``recipe_status`` tells a run that follows a
preset's recipe for only part of its budget that it is partial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from seqmnist.config import RunConfig, load_toml
from seqmnist.errors import ConfigError
from seqmnist.presets.families import FAMILY_PRESETS, PUBLISHED, Published
from seqmnist.presets.references import REFERENCES

PRESETS: dict[str, Callable[[], RunConfig]] = {**REFERENCES, **FAMILY_PRESETS}

# Settings that change the budget, the seed or where and how a run is watched, not the
# recipe it follows (a bf16 run of a recipe is still that recipe, run in bf16).
_NOT_THE_RECIPE = (
    "epochs", "steps", "samples", "seed", "device", "precision", "threads", "log_every",
    "tensorboard", "checkpoint_every", "eval_batch_size",
)  # fmt: skip


def get_preset(name: str) -> RunConfig:
    """The preset's configuration; an unknown name is a ConfigError listing the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def load_recipe(name_or_file: str) -> RunConfig:
    """A preset by name, or a config file (TOML, or a run's config.json) over ``default``."""
    if name_or_file in PRESETS:
        return PRESETS[name_or_file]()
    path = Path(name_or_file)
    if path.suffix in (".toml", ".json") or path.exists():
        return load_toml(path, get_preset("default"))
    raise ConfigError(
        f"unknown preset {name_or_file!r} and no such config file; give one of "
        f"{', '.join(PRESETS)}, or a TOML file"
    )


def recipe_status(config: RunConfig, train_size: int) -> dict[str, Any] | None:
    """How a run named after a preset stands against that preset's whole recipe.

    None when the name is no preset's or the run changed what the recipe
    trains (model, data or optimisation); otherwise the recipe's budget in
    steps, this run's, and whether it is partial, with the published figure
    where the recipe has one, so a partial run is never read as the paper's.
    """
    if config.name not in PRESETS:
        return None
    preset = PRESETS[config.name]()
    unchanged = {name: getattr(preset.train, name) for name in _NOT_THE_RECIPE}
    if (
        config.model != preset.model
        or dataclasses.replace(config.train, **unchanged) != preset.train
        or (config.data.dataset, config.data.validation_size)
        != (preset.data.dataset, preset.data.validation_size)
    ):
        return None
    recipe_steps = preset.train.total_steps(train_size)
    steps = config.train.total_steps(train_size)
    published: Published | None = PUBLISHED.get(config.name)
    return {
        "preset": config.name,
        "steps": steps,
        "recipe_steps": recipe_steps,
        "partial": steps < recipe_steps,
        "longer": steps > recipe_steps,  # past the recipe's budget: not the recipe's figure either
        "published": None if published is None else dataclasses.asdict(published),
    }


__all__ = ["PRESETS", "PUBLISHED", "Published", "get_preset", "load_recipe", "recipe_status"]
