"""seqmnist: recurrent classifiers that read images as sequences.

The package root is light: ``import seqmnist`` loads no torch, nor even the
package metadata. The API names below are imported on first use, so
``seqmnist --help`` starts at once and Ctrl-C while starting is handled.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public name -> the module that defines it.
_EXPORTS = {
    "train": "seqmnist.api",
    "resume": "seqmnist.api",
    "make_config": "seqmnist.api",
    "evaluate_run": "seqmnist.api",
    "DataConfig": "seqmnist.config",
    "ModelConfig": "seqmnist.config",
    "RunConfig": "seqmnist.config",
    "TrainConfig": "seqmnist.config",
    "PRESETS": "seqmnist.presets",
    "get_preset": "seqmnist.presets",
    "load_run": "seqmnist.runs",
    "Runtime": "seqmnist.runtime",
    "Prediction": "seqmnist.use",
    "Predictor": "seqmnist.use",
}

__all__ = [  # noqa: F822 - each name is defined on first use, by __getattr__
    "PRESETS", "DataConfig", "ModelConfig", "Prediction", "Predictor", "RunConfig", "Runtime",
    "TrainConfig", "evaluate_run", "get_preset", "load_run", "make_config", "resume", "train",
]  # fmt: skip

if TYPE_CHECKING:  # for editors and type checkers; at run time __getattr__ imports lazily
    from seqmnist.api import evaluate_run, make_config, resume, train
    from seqmnist.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from seqmnist.presets import PRESETS, get_preset
    from seqmnist.runs import load_run
    from seqmnist.runtime import Runtime
    from seqmnist.use import Prediction, Predictor


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from package metadata, read when first asked for
        from seqmnist.version import package_version

        return package_version()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seqmnist' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
