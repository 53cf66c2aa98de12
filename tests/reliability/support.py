"""Helpers for the reliability tests: tiny runs on the stripes data, and ways to stop them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

from seqmnist.api import make_config
from seqmnist.runs import read_config
from seqmnist.training import StopRequests, train
from seqmnist.training.checkpoint import CheckpointStore

# 500 training images / batch 32 = 15 steps per epoch.
STEPS_PER_EPOCH = 15


def tiny_config(stripes_dir: Path, **overrides):
    """Dropout and a one-cycle schedule on, so the RNG and schedule state must be restored."""
    fields = dict(
        dataset=str(stripes_dir), validation_size=100, hidden_sizes="8", batch_size=32,
        steps=40, log_every=2, lr=0.01, eval_batch_size=64, device="cpu", precision="fp32",
        dropout=0.2, schedule="onecycle", checkpoint_every=4,
    )  # fmt: skip
    fields.update(overrides)
    return make_config("default", **fields)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


TIME_FIELDS = ("time", "elapsed")


def records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without its wall-clock fields."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [
        {key: value for key, value in json.loads(line).items() if key not in TIME_FIELDS}
        for line in lines
    ]


def store(run_dir: Path) -> CheckpointStore:
    """The checkpoint store of a finished or interrupted run, as a resume would open it."""
    from seqmnist.runs import ModelInfo, build_model

    config = read_config(run_dir)
    # The stripes images are 6x5 in 3 classes.
    model = build_model(config.model, ModelInfo((6, 5), ("0", "1", "2")))
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    return CheckpointStore(run_dir, config, shapes)


def signal_at(step: int, number: int = signal.SIGINT):
    """A metrics callback that sends ``number`` to this process once ``step`` is recorded."""

    def callback(record: dict) -> None:
        if record["step"] == step:
            os.kill(os.getpid(), number)

    return callback


def train_as_the_cli_does(*args, **kwargs):
    """train() with SIGINT and SIGTERM held for it, as `seqmnist train` holds them."""
    with StopRequests() as stop:
        return train(*args, stop=stop, **kwargs)
