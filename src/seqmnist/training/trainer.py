"""A run's lifecycle: set up model and data, run the loop, keep the best weights, test, save."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import seqmnist
from seqmnist.config import RunConfig
from seqmnist.data import ImageSplits, load_dataset
from seqmnist.device import resolve_device
from seqmnist.errors import RunError, StorageError
from seqmnist.evaluation import Evaluation, evaluate
from seqmnist.files import atomic_write_json, describe_write_error
from seqmnist.model import count_parameters
from seqmnist.runs import (
    METRICS_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    ModelInfo,
    build_model,
    save_weights,
    write_config,
)
from seqmnist.training.checkpoint import CheckpointStore
from seqmnist.training.loop import TrainingLoop
from seqmnist.training.progress import (
    TENSORBOARD_DIR,
    MetricsLog,
    Record,
    TensorBoardLog,
    keep_records_through,
)


@dataclass(frozen=True)
class TrainResult:
    config: RunConfig
    run_dir: Path | None
    model: nn.Module
    info: ModelInfo
    validation: Evaluation
    test: Evaluation
    summary: dict[str, Any]


@dataclass
class DeviceSplit:
    """A split kept whole on the device as uint8; batches are converted as they are drawn."""

    images: torch.Tensor  # (N, H, W) uint8
    labels: torch.Tensor  # (N,) int64

    @classmethod
    def from_arrays(cls, images, labels, device: torch.device) -> DeviceSplit:
        return cls(torch.from_numpy(images).to(device), torch.from_numpy(labels).long().to(device))

    def __len__(self) -> int:
        return len(self.labels)


def train(
    config: RunConfig,
    out_dir: Path | str | None = None,
    *,
    splits: ImageSplits | None = None,
    progress: bool | None = None,
    callbacks: tuple[Callable[[Record], None], ...] = (),
    resume: bool = False,
    model: nn.Module | None = None,
) -> TrainResult:
    """Train ``config``; with ``out_dir``, write the run there. Returns the best-validation model.

    With ``out_dir``, the training state is checkpointed (every ``checkpoint_every``
    steps and at each epoch end) and SIGINT/SIGTERM stop it after a checkpoint.
    ``resume`` continues the run in ``out_dir`` from its newest intact checkpoint;
    the result is the same as if it had never stopped. ``model`` trains a model
    built elsewhere (it must match ``config.model``), so the caller keeps a handle on it.
    """
    called = time.perf_counter()
    if resume and out_dir is None:
        raise ValueError("resume needs the run directory as out_dir")
    torch.manual_seed(config.train.seed)
    device = resolve_device(config.train.device)
    if splits is None:
        splits = load_dataset(
            config.data.dataset, config.data.data_dir, config.data.validation_size
        )
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    model = (model if model is not None else build_model(config.model, info)).to(device)
    train_split, val_split, test_split = (
        DeviceSplit.from_arrays(*splits.split(name), device) for name in ("train", "val", "test")
    )
    run_dir = _prepare_run_dir(out_dir, config, resume)
    total_steps = config.train.total_steps(len(train_split))
    checkpoints = None
    if run_dir is not None:
        shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
        checkpoints = CheckpointStore(run_dir, config, shapes)
    start = checkpoints.latest() if resume else None
    if start is not None:
        keep_records_through(run_dir / METRICS_FILE, start.step)
    elif checkpoints is not None:
        checkpoints.clear()
    if config.train.tensorboard and run_dir is not None:
        purge_after = start.step if start is not None else None
        callbacks = (*callbacks, TensorBoardLog(run_dir / TENSORBOARD_DIR, purge_after))
    log = MetricsLog(run_dir / METRICS_FILE if run_dir else None, total_steps, progress, callbacks)
    try:
        loop = TrainingLoop(
            config.train, model, train_split, val_split, info.num_classes, total_steps, log,
            checkpoints,
        )  # fmt: skip
        if start is not None:
            loop.restore(start)
            log.advance(loop.step)
        setup_seconds = time.perf_counter() - called
        loop.run()
        train_seconds = loop.elapsed()
    finally:
        log.close()
    model.load_state_dict(loop.best_state)
    validation = loop.best_validation
    test = evaluate(
        model, test_split.images, test_split.labels, split="test", num_classes=info.num_classes,
        batch_size=config.train.eval_batch_size, precision=config.train.precision,
    )  # fmt: skip
    summary = _summary(config, model, loop, validation, test, train_seconds, device)
    summary["setup_seconds"] = setup_seconds
    if run_dir is not None:
        save_weights(run_dir / WEIGHTS_FILE, model, info)
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return TrainResult(config, run_dir, model, info, validation, test, summary)


def _prepare_run_dir(out_dir: Path | str | None, config: RunConfig, resume: bool) -> Path | None:
    if out_dir is None:
        return None
    run_dir = Path(out_dir)
    if resume:
        if not run_dir.is_dir():
            raise RunError(f"run directory {run_dir} does not exist; give the --out of a run")
        return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StorageError(describe_write_error(run_dir, error)) from None
    # A new run in an old directory: nothing of the old run may be mistaken for this one's.
    for name in (METRICS_FILE, WEIGHTS_FILE, SUMMARY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    write_config(run_dir, config)
    return run_dir


def _summary(
    config, model, loop: TrainingLoop, validation, test, train_seconds, device
) -> dict[str, Any]:
    samples = loop.step * loop.batch_size
    return {
        "preset": config.name,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": validation.accuracy,
        "val_loss": validation.loss,
        "params": count_parameters(model),
        "steps": loop.step,
        "samples": samples,
        "best_step": loop.best_step,
        "train_seconds": train_seconds,
        "samples_per_second": samples / train_seconds,
        "device": str(device),
        "precision": loop.precision,
        "torch_version": torch.__version__,
        "seqmnist_version": seqmnist.__version__,
    }
