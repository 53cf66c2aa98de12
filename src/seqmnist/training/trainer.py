"""The one training loop: setup, steps, per-epoch validation, best weights, test."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import seqmnist
from seqmnist.config import RunConfig, TrainConfig
from seqmnist.data import ImageSplits, load_dataset
from seqmnist.device import autocast, resolve_device
from seqmnist.evaluation import Evaluation, evaluate, to_unit_float
from seqmnist.files import atomic_write_json
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
from seqmnist.training.optim import build_optimizer, build_schedule
from seqmnist.training.progress import MetricsLog, Record


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
) -> TrainResult:
    """Train ``config``; with ``out_dir``, write the run there. Returns the best-validation model."""
    torch.manual_seed(config.train.seed)
    device = resolve_device(config.train.device)
    if splits is None:
        splits = load_dataset(
            config.data.dataset, config.data.data_dir, config.data.validation_size
        )
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    model = build_model(config.model, info).to(device)
    train_split, val_split, test_split = (
        DeviceSplit.from_arrays(*splits.split(name), device) for name in ("train", "val", "test")
    )
    run_dir = _prepare_run_dir(out_dir, config)
    total_steps = config.train.total_steps(len(train_split))
    log = MetricsLog(run_dir / METRICS_FILE if run_dir else None, total_steps, progress, callbacks)
    try:
        loop = _Loop(
            config.train, model, train_split, val_split, info.num_classes, total_steps, log
        )
        started = time.perf_counter()
        loop.run()
        train_seconds = time.perf_counter() - started
    finally:
        log.close()
    model.load_state_dict(loop.best_state)
    validation = loop.best_validation
    test = evaluate(
        model, test_split.images, test_split.labels, split="test", num_classes=info.num_classes,
        batch_size=config.train.eval_batch_size, precision=config.train.precision,
    )  # fmt: skip
    summary = _summary(config, model, loop, validation, test, train_seconds, device)
    if run_dir is not None:
        save_weights(run_dir / WEIGHTS_FILE, model, info)
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return TrainResult(config, run_dir, model, info, validation, test, summary)


def _prepare_run_dir(out_dir: Path | str | None, config: RunConfig) -> Path | None:
    if out_dir is None:
        return None
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    write_config(run_dir, config)
    return run_dir


class _Loop:
    """Step through the budget, validating at every epoch end and keeping the best weights."""

    def __init__(
        self, config: TrainConfig, model, train_split, val_split, num_classes, total_steps, log
    ):
        self.config = config
        self.model = model
        self.train_split = train_split
        self.val_split = val_split
        self.num_classes = num_classes
        self.total_steps = total_steps
        self.log = log
        self.optimizer = build_optimizer(model, config)
        self.schedule = build_schedule(self.optimizer, config, total_steps)
        self.device = train_split.labels.device
        # The data order has its own generator so it does not shift with dropout or init.
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.batch_size = min(config.batch_size, len(train_split))
        self.steps_per_epoch = len(train_split) // self.batch_size
        self.step = 0
        self.best_validation: Evaluation | None = None
        self.best_state: dict[str, torch.Tensor] = {}
        self.best_step = 0

    def run(self) -> None:
        self.model.train()
        while self.step < self.total_steps:
            self._run_epoch()

    def _run_epoch(self) -> None:
        order = torch.randperm(len(self.train_split), generator=self.order_generator)
        order = order.to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        batches = 0
        for batch in range(self.steps_per_epoch):
            if self.step >= self.total_steps:
                break
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            loss, correct = self._train_step(indices)
            loss_sum += loss
            batches += 1
            self.step += 1
            self.log.advance()
            if self.step % self.config.log_every == 0:
                self._record_batch(loss, correct, len(indices))
        self._end_epoch(loss_sum.item() / max(batches, 1))

    def _train_step(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = to_unit_float(self.train_split.images[indices])  # (B, H, W)
        labels = self.train_split.labels[indices]  # (B,)
        with autocast(self.device, self.config.precision):
            logits = self.model(images)  # (B, C)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        return loss.detach(), (logits.argmax(dim=1) == labels).sum()

    def _record_batch(self, loss: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        self.log.record({
            "kind": "batch",
            "step": self.step,
            "epoch": self.epoch,
            "loss": loss.item(),
            "accuracy": correct.item() / size,
            "lr": self.optimizer.param_groups[0]["lr"],
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
            "time": time.time(),
        })  # fmt: skip
        if self.best_validation is None or validation.accuracy > self.best_validation.accuracy:
            self.best_validation = validation
            self.best_state = copy.deepcopy(self.model.state_dict())
            self.best_step = self.step


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
        "torch_version": torch.__version__,
        "seqmnist_version": seqmnist.__version__,
    }
