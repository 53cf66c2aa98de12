"""The runs a server answers for: loaded once at start, named, described for /api/runs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqmnist.errors import ConfigError
from seqmnist.model import count_parameters
from seqmnist.use.explain import STEP_NAMES
from seqmnist.use.predict import Predictor

# Paths (served under their folder's names), (name, path) pairs, or a mapping of the two.
RunDirs = Sequence[Path | str | tuple[str, Path | str]] | Mapping[str, Path | str]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ServedRun:
    name: str
    predictor: Predictor

    def describe(self) -> dict[str, Any]:
        """What a client needs to show the run: its model, classes and test accuracy."""
        run = self.predictor.run
        model = run.config.model
        summary = run.summary or {}
        return {
            "name": self.name,
            "cell": model.cell,
            "view": model.view,
            "step_name": STEP_NAMES[model.view],
            "steps": run.model.view.steps,
            "hidden_sizes": list(model.hidden_sizes),
            "bidirectional": model.bidirectional,
            "parameters": count_parameters(run.model),
            "image_shape": list(run.info.image_shape),
            "class_names": list(run.info.class_names),
            "test_accuracy": summary.get("test_accuracy"),
            "preset": summary.get("preset"),
        }


def load_served_runs(run_dirs: RunDirs) -> list[ServedRun]:
    """Load every run, named by its folder (or by the mapping's keys); names must differ."""
    if isinstance(run_dirs, Mapping):
        named = list(run_dirs.items())
    else:
        named = [
            entry if isinstance(entry, tuple) else (Path(entry).resolve().name, entry)
            for entry in run_dirs
        ]
    if not named:
        raise ConfigError("give at least one run directory to serve")
    seen: dict[str, Path | str] = {}
    for name, path in named:
        if name in seen:
            raise ConfigError(
                f"two runs would both be served as {name!r} ({seen[name]} and {path}); "
                f"name them apart with NAME=PATH, e.g. {name}-2={path}"
            )
        if not NAME.fullmatch(name):
            raise ConfigError(
                f"{name!r} cannot name a served run; use letters, digits, '.', '-' and '_'"
            )
        seen[name] = path
    return [ServedRun(name, Predictor.from_run(path)) for name, path in named]
