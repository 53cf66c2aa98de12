"""Models: a sequence view in front of a stack of recurrent cores and a linear readout.

Light to import: ``seqmnist.model.options`` (the families' settings) is read by
the configuration without loading torch; the rest loads on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RecurrentClassifier": "seqmnist.model.recurrent",
    "count_parameters": "seqmnist.model.recurrent",
    "SequenceView": "seqmnist.model.views",
    "make_permutation": "seqmnist.model.views",
}

__all__ = ["RecurrentClassifier", "SequenceView", "count_parameters", "make_permutation"]  # noqa: F822


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seqmnist.model' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
