"""The Python API: what the CLI does, callable from a notebook, returning result objects.

>>> import seqmnist
>>> result = seqmnist.train("ref2-lstm128", out_dir="runs/r2", lr=2e-3)
>>> result.test.accuracy
>>> seqmnist.evaluate_run("runs/r2", split="val").confusion
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqmnist.config import RunConfig, apply_overrides
from seqmnist.errors import NonFiniteOutputs
from seqmnist.evaluation import DeviceSplit, Evaluation, evaluate
from seqmnist.presets import get_preset
from seqmnist.runs import load_run, read_config, repair_hint, run_split
from seqmnist.runtime import Runtime
from seqmnist.training import StopRequests, TrainResult
from seqmnist.training import train as _train_config


def make_config(preset: str = "default", **overrides: Any) -> RunConfig:
    """A preset with fields replaced by name, e.g. ``make_config("default", cell="gru")``."""
    return apply_overrides(get_preset(preset), overrides)


def train(
    config: RunConfig | str = "default",
    out_dir: Path | str | None = None,
    *,
    progress: bool | None = None,
    overwrite: bool = False,
    runtime: Runtime | None = None,
    stop: StopRequests | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a preset (by name) or a RunConfig, with optional field overrides.

    An ``out_dir`` that already holds a run is refused unless ``overwrite``.
    ``runtime`` defaults to what the configuration asks for on this machine.
    Signals keep their usual effect unless the caller passes ``stop``, a
    ``StopRequests`` it has entered: then Ctrl-C ends the run after the step (with a
    checkpoint where there is an ``out_dir``).
    """
    base = get_preset(config) if isinstance(config, str) else config
    return _train_config(
        apply_overrides(base, overrides), out_dir, progress=progress, overwrite=overwrite,
        runtime=runtime, stop=stop,
    )  # fmt: skip


def resume(
    run_dir: Path | str, *, data_dir: str | None = None, progress: bool | None = None,
    stop: StopRequests | None = None,
) -> TrainResult:  # fmt: skip
    """Continue a stopped run from its newest intact checkpoint, as if it had never stopped.

    The settings are those in its config.json; only where the data lives may change.
    """
    config = read_config(Path(run_dir))
    if data_dir is not None:
        config = apply_overrides(config, {"data_dir": data_dir})
    return _train_config(config, run_dir, progress=progress, resume=True, stop=stop)


def evaluate_run(
    run_dir: Path | str,
    split: str = "test",
    *,
    data_dir: str | None = None,
    device: str | None = None,
    runtime: Runtime | None = None,
) -> Evaluation:
    """Recompute accuracy, loss and confusion of a finished run on a whole split.

    The same evaluation the run's summary.json came from, so on the same
    device the figures agree exactly.
    """
    if device is not None and runtime is not None:
        raise ValueError("give device or runtime, not both")
    run = load_run(run_dir)
    config = run.config
    # Evaluation is fp32 whatever the run trained in; only the device and threads matter.
    runtime = runtime or Runtime.resolve(
        device or config.train.device, "fp32", threads=config.train.threads
    )
    loaded = run_split(run, split, data_dir)  # reads only this split's files
    data = DeviceSplit.from_arrays(loaded.images, loaded.labels, runtime.device)
    try:
        return evaluate(
            run.model.to(runtime.device), data.images, data.labels, split=split,
            num_classes=run.info.num_classes, batch_size=config.train.eval_batch_size,
        )  # fmt: skip
    except NonFiniteOutputs as error:
        raise NonFiniteOutputs(f"{error}: {repair_hint(run.directory)}") from None
