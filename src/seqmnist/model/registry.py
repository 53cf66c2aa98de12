"""Every recurrent family by its --cell name: the one list the CLI, presets and tests draw from.

Each family module has a ``build(spec) -> RecurrentCore`` for one layer; the
registry names it, its paper, and its settings section (model/options.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seqmnist.model import classic, cornn, indrnn, lem, lru, mingru
from seqmnist.model.core import CoreError, RecurrentCore


@dataclass(frozen=True)
class LayerSpec:
    """What a family needs to build one layer of a stack."""

    input_size: int
    hidden_size: int  # per direction
    bidirectional: bool
    steps: int  # the sequence length the model reads (some inits depend on it)
    options: Any  # the family's section of the model configuration, or None


@dataclass(frozen=True)
class Family:
    name: str
    paper: str
    build: Callable[[LayerSpec], RecurrentCore]
    # The training precisions in which a long run's compiled step measured faster
    # than the eager one on a CPU (training/compilation.py says by how much): what
    # --compile auto goes by.
    compile_pays: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "rnn": Family("rnn", "Elman 1990 (PyTorch's fused nn.RNN, tanh)", classic.build_rnn),
    "lstm": Family(
        "lstm", "Hochreiter and Schmidhuber 1997 (PyTorch's fused nn.LSTM)", classic.build_lstm
    ),
    "gru": Family("gru", "Cho et al. 2014 (PyTorch's fused nn.GRU)", classic.build_gru),
    "lru": Family(
        "lru",
        "Orvieto et al. 2023, Resurrecting Recurrent Neural Networks for Long Sequences",
        lru.build,
        compile_pays=("bf16",),
    ),  # fmt: skip
    "mingru": Family(
        "mingru",
        "Feng et al. 2024, Were RNNs All We Needed? (minGRU)",
        mingru.build_mingru,
        compile_pays=("bf16",),
    ),
    "minlstm": Family(
        "minlstm", "Feng et al. 2024, Were RNNs All We Needed? (minLSTM)", mingru.build_minlstm
    ),
    "cornn": Family(
        "cornn",
        "Rusch and Mishra, ICLR 2021, Coupled Oscillatory Recurrent Neural Network",
        cornn.build,
    ),  # fmt: skip
    "lem": Family(
        "lem", "Rusch et al., ICLR 2022, Long Expressive Memory for Sequence Modeling", lem.build
    ),
    "indrnn": Family(
        "indrnn",
        "Li et al., CVPR 2018, Independently Recurrent Neural Network (IndRNN)",
        indrnn.build,
    ),  # fmt: skip
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise CoreError(f"unknown cell {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]
