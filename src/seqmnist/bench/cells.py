"""`seqmnist bench --cells`: every family's training and inference speed beside nn.LSTM's.

Each family is measured at its row preset's size (about 80k parameters;
``row-NAME``), reading MNIST by rows (28 steps) and by pixels (784 steps),
against row-lstm's nn.LSTM-128 in the same process. The models take
turns in short timed windows, round after round, so every one of them sees
the same machine load; a figure is the median over rounds. Training is
seqmnist's own step (TrainStep: forward, loss, backward, clipping, fused
AdamW) in the runtime's precision, through torch.compile where training
would compile it: with ``compile="auto"``, where a full run of the family's
preset for that view would (training/compilation.py; by pixels, for the
families it pays for). Inference is a forward pass of a batch of 1,000 test
images in fp32, as ``seqmnist eval`` runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from seqmnist.bench.timing import median, timed
from seqmnist.config import ModelConfig, RunConfig, TrainConfig
from seqmnist.data import ImageSplits
from seqmnist.errors import ConfigError
from seqmnist.model import count_parameters
from seqmnist.model.inputs import to_unit_float
from seqmnist.model.registry import FAMILIES
from seqmnist.presets import PRESETS, get_preset
from seqmnist.runs import ModelInfo, build_model
from seqmnist.runtime import Runtime
from seqmnist.training.compilation import choose
from seqmnist.training.optim import build_optimizer
from seqmnist.training.step import TrainStep

REFERENCE = "lstm"
VIEWS = ("rows", "pixels")  # 28 and 784 steps for an MNIST image
# Families with no row preset of their own, sized to the LSTM's ~80k parameters by rows.
_PLAIN_SIZES = {"rnn": (256,), "gru": (146,)}
INFERENCE_BATCH = 1000


@dataclass(frozen=True)
class CellSpeed:
    cell: str
    view: str
    sequence_length: int
    params: int
    train_samples_per_second: float
    infer_samples_per_second: float
    compiled: bool = False  # whether the training step ran through torch.compile


def model_for(cell: str) -> ModelConfig:
    """The family's model at about 80k parameters: its row preset's, or row-lstm's resized.

    Without dropout, as the reference LSTM is: its random masks are a recipe's
    regularisation, not the family's cost (at 784 steps they took 12% of
    LRU's training step).
    """
    if f"row-{cell}" in PRESETS:  # row-lstm, the reference, among them
        model = get_preset(f"row-{cell}").model
    else:
        model = dataclasses.replace(
            get_preset("row-lstm").model, cell=cell, hidden_sizes=_PLAIN_SIZES[cell]
        )
    return dataclasses.replace(model, dropout=0.0)


def compiled_as_trained(
    cell: str, view: str, sequence_length: int, runtime: Runtime, compile: str, train_size: int
) -> bool:
    """Whether training would compile this family's step: as its preset for the view
    (``pixel-NAME`` for 784 steps) would run in full with ``--compile compile``."""
    name = f"{'row' if view == 'rows' else 'pixel'}-{cell}"
    config = get_preset(name) if name in PRESETS else RunConfig(model=model_for(cell))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, compile=compile))
    total_steps = config.train.total_steps(train_size)
    return choose(config, runtime, total_steps, sequence_length).compiled


def check_cells(cells: Sequence[str]) -> list[str]:
    """The families to measure, the reference first; unknown names are one ConfigError."""
    unknown = [cell for cell in cells if cell not in FAMILIES]
    if unknown:
        raise ConfigError(
            f"unknown cell {unknown[0]!r} in --cells; choose from {', '.join(FAMILIES)}"
        )
    if not cells:
        raise ConfigError("--cells names no family; give e.g. --cells lstm,lru or all of them")
    return [REFERENCE, *dict.fromkeys(cell for cell in cells if cell != REFERENCE)]


def measure_cells(
    cells: Sequence[str], splits: ImageSplits, runtime: Runtime, *, batch_size: int = 128,
    rounds: int = 5, target_seconds: float = 0.5, compile: str = "auto",
) -> list[CellSpeed]:  # fmt: skip
    """Training and inference samples/s of each family at 28 and 784 steps.

    ``compile`` is training's --compile: ``auto`` compiles a family's step
    where a full run of its preset for the view would be compiled.
    """
    cells = check_cells(cells)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    device = runtime.device
    images = torch.from_numpy(splits.train_images[:batch_size]).to(device)
    labels = torch.from_numpy(splits.train_labels[:batch_size]).long().to(device)
    test_images = torch.from_numpy(splits.test_images[:INFERENCE_BATCH]).to(device)
    train_config = TrainConfig(batch_size=batch_size)  # AdamW, clipping at 1: the defaults
    train_size = len(splits.split("train")[0])
    results: list[CellSpeed] = []
    for view in VIEWS:
        models, steps, forwards, train_forwards = {}, {}, {}, {}
        for cell in cells:
            torch.manual_seed(0)
            model = build_model(dataclasses.replace(model_for(cell), view=view), info).to(device)
            optimizer = build_optimizer(model, train_config, device)
            step = TrainStep(
                model, optimizer, None, train_config, runtime,
                compiled=compiled_as_trained(
                    cell, view, model.view.steps, runtime, compile, train_size
                ),
            )  # fmt: skip
            train_forwards[cell] = step.forward
            models[cell] = model
            steps[cell] = lambda step=step: step(images, labels)
            forwards[cell] = _forward(model, test_images)
        train = _rates(steps, device, batch_size, rounds, target_seconds)
        for model in models.values():
            model.eval()
        infer = _rates(forwards, device, len(test_images), rounds, target_seconds)
        results += [
            CellSpeed(
                cell,
                view,
                models[cell].view.steps,
                count_parameters(models[cell]),
                train[cell],
                infer[cell],
                train_forwards[cell].is_compiled,  # false too if compiling failed
            )  # fmt: skip
            for cell in cells
        ]
    return results


def _forward(model: torch.nn.Module, images: torch.Tensor) -> Callable[[], None]:
    @torch.inference_mode()
    def forward() -> None:
        model(to_unit_float(images))

    return forward


def _rates(
    work: dict[str, Callable[[], object]], device: torch.device, samples: int, rounds: int,
    target_seconds: float,
) -> dict[str, float]:  # fmt: skip
    """Median samples/s of each callable, taking turns in windows of about target_seconds."""
    repeats = {}
    for name, call in work.items():
        call()  # warm-up: first-call allocations and kernel choices
        once = timed(device, call)
        repeats[name] = max(1, round(target_seconds / max(once, 1e-6)))
    rates: dict[str, list[float]] = {name: [] for name in work}
    for _ in range(rounds):
        for name, call in work.items():
            count = repeats[name]
            seconds = timed(device, lambda call=call, count=count: [call() for _ in range(count)])
            rates[name].append(count * samples / seconds)
    return {name: median(values) for name, values in rates.items()}


def ratios(results: Sequence[CellSpeed]) -> dict[tuple[str, str], tuple[float, float]]:
    """(cell, view) -> (training, inference) samples/s as a multiple of the LSTM's."""
    reference = {r.view: r for r in results if r.cell == REFERENCE}
    return {
        (r.cell, r.view): (
            r.train_samples_per_second / reference[r.view].train_samples_per_second,
            r.infer_samples_per_second / reference[r.view].infer_samples_per_second,
        )
        for r in results
    }
