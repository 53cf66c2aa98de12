"""The one training loop: setup, steps, per-epoch validation, best weights, test."""

from __future__ import annotations

import copy
import dataclasses
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import seqmnist
from seqmnist.config import RunConfig, TrainConfig
from seqmnist.data import ImageSplits, load_dataset
from seqmnist.device import resolve_device, resolve_precision
from seqmnist.errors import RunError, StorageError, TrainingDiverged, TrainingInterrupted
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
from seqmnist.training.checkpoint import Checkpoint, CheckpointStore
from seqmnist.training.interrupts import StopRequests
from seqmnist.training.optim import build_optimizer, build_schedule
from seqmnist.training.progress import (
    TENSORBOARD_DIR,
    MetricsLog,
    Record,
    TensorBoardLog,
    keep_records_through,
)
from seqmnist.training.step import TrainStep


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
        loop = _Loop(
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


class _Loop:
    """Step through the budget, validating at every epoch end and keeping the best weights."""

    def __init__(
        self, config: TrainConfig, model, train_split, val_split, num_classes, total_steps, log,
        checkpoints: CheckpointStore | None = None,
    ):  # fmt: skip
        self.config = config
        self.model = model
        self.train_split = train_split
        self.val_split = val_split
        self.num_classes = num_classes
        self.total_steps = total_steps
        self.log = log
        self.device = train_split.labels.device
        self.optimizer = build_optimizer(model, config, self.device)
        self.schedule = build_schedule(self.optimizer, config, total_steps)
        self.precision = resolve_precision(config.precision, self.device)  # auto -> fp32/bf16
        self.step_fn = TrainStep(model, self.optimizer, self.schedule, config, self.precision)
        # The data order has its own generator so it does not shift with dropout or init.
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.batch_size = min(config.batch_size, len(train_split))
        self.steps_per_epoch = len(train_split) // self.batch_size
        self.step = 0
        self.best_validation: Evaluation | None = None
        self.best_state: dict[str, torch.Tensor] = {}
        self.best_step = 0
        # Where in the epoch the loop stands; with the generator's state from before the
        # epoch's permutation, a checkpoint can restart mid-epoch on the same batches.
        self.epoch_batch = 0
        self.epoch_loss_sum = torch.zeros((), device=self.device)
        self.epoch_order_state = self.order_generator.get_state()
        self.checkpoints = checkpoints
        self.stop_requests = StopRequests(enabled=checkpoints is not None)
        self.saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        # Every loss up to checked_step is known finite; all_finite covers the later ones.
        self.checked_step = 0
        self.all_finite = torch.ones((), dtype=torch.bool, device=self.device)
        self.seconds_before = 0.0  # training time before a resume
        self.run_started = time.perf_counter()

    def elapsed(self) -> float:
        """Training seconds so far: before a resume, plus this run's, less time in callbacks."""
        return (
            self.seconds_before + time.perf_counter() - self.run_started - self.log.callback_seconds
        )

    def run(self) -> None:
        self.model.train()
        self.run_started = time.perf_counter()
        with self.stop_requests:
            while self.step < self.total_steps:
                self._run_epoch()

    def _run_epoch(self) -> None:
        self.epoch_order_state = self.order_generator.get_state()
        order = torch.randperm(len(self.train_split), generator=self.order_generator)
        order = order.to(self.device)
        for batch in range(self.epoch_batch, self.steps_per_epoch):
            if self.step >= self.total_steps:
                break
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            loss, correct = self._train_step(indices)
            self.epoch_loss_sum += loss
            self.epoch_batch += 1
            self.step += 1
            self._note_loss(loss)
            self.log.advance()
            if self.step % self.config.log_every == 0:
                self._record_batch(loss, correct, len(indices))
            if self._checkpoint_due():
                self._save_checkpoint()
            self._stop_if_requested()
        self._verify_finite()
        self._end_epoch(self.epoch_loss_sum.item() / max(self.epoch_batch, 1))
        self.epoch_batch = 0
        self.epoch_loss_sum = torch.zeros((), device=self.device)
        self.epoch_order_state = self.order_generator.get_state()
        self._save_checkpoint()
        self._stop_if_requested()

    def _train_step(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step_fn(self.train_split.images[indices], self.train_split.labels[indices])

    def _record_batch(self, loss: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        self._verify_finite()
        self.log.record({
            "kind": "batch",
            "step": self.step,
            "epoch": self.epoch,
            "loss": loss.item(),
            "accuracy": correct.item() / size,
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": self.elapsed(),
            "time": time.time(),
        })  # fmt: skip

    @property
    def epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    def _end_epoch(self, train_loss: float) -> None:
        validation = evaluate(
            self.model, self.val_split.images, self.val_split.labels, split="val",
            num_classes=self.num_classes, batch_size=self.config.eval_batch_size,
            precision=self.config.precision,
        )  # fmt: skip
        self.log.record({
            "kind": "epoch",
            "step": self.step,
            "epoch": self.epoch,
            "train_loss": train_loss,
            "val_loss": validation.loss,
            "val_accuracy": validation.accuracy,
            "elapsed": self.elapsed(),
            "time": time.time(),
        })  # fmt: skip
        if self.best_validation is None or validation.accuracy > self.best_validation.accuracy:
            self.best_validation = validation
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_step = self.step

    def _note_loss(self, loss: torch.Tensor) -> None:
        # Accumulated on the device; on a GPU it is read only at records and checkpoints,
        # so the check adds no synchronisation to a step.
        self.all_finite &= torch.isfinite(loss)
        if self.device.type == "cpu":
            self._verify_finite()

    def _verify_finite(self, weights: bool = False) -> None:
        """Stop with TrainingDiverged if a loss since the last check (or a weight) is NaN or inf."""
        first = self.checked_step + 1
        if not bool(self.all_finite):
            what = "the loss" + (f" at step {first}" if first >= self.step else
                                 f" between steps {first} and {self.step}")  # fmt: skip
        elif weights and not bool(
            torch.stack([p.isfinite().all() for p in self.model.parameters()]).all()
        ):
            what = f"the weights by step {self.step}"
        else:
            self.checked_step = self.step
            return
        kept = (
            f"; the last good checkpoint, {self.last_checkpoint}, is kept as it was"
            if self.last_checkpoint is not None
            else ""
        )
        raise TrainingDiverged(
            f"training stopped: {what} became NaN or infinite{kept}; try a lower --lr "
            f"(now {self.config.lr:g}) or gradient clipping (--grad-clip, now "
            f"{self.config.grad_clip:g}) and train again"
        )

    def _checkpoint_due(self) -> bool:
        every = self.config.checkpoint_every
        # Epoch ends (the budget's end is one) save anyway, just after validating.
        return (
            self.checkpoints is not None
            and every > 0
            and self.step % every == 0
            and self.epoch_batch < self.steps_per_epoch
            and self.step < self.total_steps
        )

    def _save_checkpoint(self) -> None:
        if self.checkpoints is None or self.saved_step == self.step:
            return
        self._verify_finite(weights=True)  # a checkpoint never holds NaN
        self.last_checkpoint = self.checkpoints.save(self.step, self.state())
        self.saved_step = self.step

    def _stop_if_requested(self) -> None:
        if self.stop_requests.received is None:
            return
        self._save_checkpoint()
        run_dir = shlex.quote(str(self.checkpoints.run_dir))
        raise TrainingInterrupted(
            f"interrupted by {self.stop_requests.name} at step {self.step}; checkpoint "
            f"{self.last_checkpoint} written; resume with: seqmnist train --resume {run_dir}",
            self.stop_requests.received,
        )

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on exactly as this one would."""
        best = self.best_validation
        return {
            "step": self.step,
            "epoch_batch": self.epoch_batch,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_order_state": self.epoch_order_state,
            "torch_rng": torch.get_rng_state(),  # dropout on the CPU
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "best_model": self.best_state,
            "best_step": self.best_step,
            "best_validation": dataclasses.asdict(best) if best is not None else None,
            "train_seconds": self.elapsed(),
        }

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``, the inverse of ``state``."""
        state = checkpoint.state
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.schedule is not None:
                self.schedule.load_state_dict(state["schedule"])
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise RunError(f"{checkpoint.path} does not fit this run: {error}") from None
        self.step = self.saved_step = self.checked_step = state["step"]
        self.last_checkpoint = checkpoint.path
        self.epoch_batch = state["epoch_batch"]
        self.epoch_loss_sum = state["epoch_loss_sum"].to(self.device)
        self.epoch_order_state = state["epoch_order_state"]
        self.order_generator.set_state(self.epoch_order_state)  # replays this epoch's order
        self.best_state = {name: t.to(self.device) for name, t in state["best_model"].items()}
        self.best_step = state["best_step"]
        best = state["best_validation"]
        self.best_validation = Evaluation(**best) if best is not None else None
        self.seconds_before = state["train_seconds"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and len(state["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _summary(config, model, loop: _Loop, validation, test, train_seconds, device) -> dict[str, Any]:
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
