"""The step loop: epochs of shuffled batches, validation, best weights, checkpoints, stops."""

from __future__ import annotations

import copy
import dataclasses
import logging
import shlex
import signal
import time
from pathlib import Path
from typing import Any

import torch

from seqmnist.config import TrainConfig
from seqmnist.distributed import all_max, all_sum, gather, rank_seed
from seqmnist.errors import (
    ConfigError,
    NonFiniteOutputs,
    RunError,
    TrainingDiverged,
    TrainingInterrupted,
)
from seqmnist.evaluation import DeviceSplit, Evaluation, evaluate
from seqmnist.runtime import Runtime, random_state, set_random_state
from seqmnist.training.checkpoint import Checkpoint, CheckpointStore
from seqmnist.training.interrupts import StopRequests
from seqmnist.training.optim import build_optimizer, build_schedule
from seqmnist.training.step import TrainStep

logger = logging.getLogger("seqmnist.train")


def _data_parallel(model: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """The model the training step runs: under torchrun, wrapped so gradients are averaged."""
    if not runtime.ranks.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


class TrainingLoop:
    """Step through the budget, validating at every epoch end and keeping the best weights."""

    def __init__(
        self, config: TrainConfig, runtime: Runtime, model, train_split: DeviceSplit,
        val_split: DeviceSplit, num_classes: int, total_steps: int, log,
        checkpoints: CheckpointStore | None = None, stop: StopRequests | None = None,
        compiled: bool = False,
    ):  # fmt: skip
        self.config = config
        self.runtime = runtime
        self.model = model
        self.train_split = train_split
        self.val_split = val_split
        self.num_classes = num_classes
        self.total_steps = total_steps
        self.log = log
        self.device = runtime.device
        self.ranks = runtime.ranks
        self.optimizer = build_optimizer(model, config, self.device)
        self.schedule = build_schedule(self.optimizer, config, total_steps)
        self.step_fn = TrainStep(_data_parallel(model, runtime), self.optimizer, self.schedule,
                                 config, runtime, compiled=compiled)  # fmt: skip
        if self.ranks.rank > 0:  # after the model's init, which every rank shares
            torch.manual_seed(rank_seed(config.seed, self.ranks.rank))
        # The data order has its own generator so it does not shift with dropout or init.
        self.order_generator = torch.Generator().manual_seed(config.seed)
        self.batch_size = min(config.batch_size, len(train_split))
        if self.batch_size % self.ranks.world_size:
            raise ConfigError(
                f"the batch of {self.batch_size} does not split evenly over "
                f"{self.ranks.world_size} processes; choose a --batch-size they divide"
            )
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
        self.stop_requests = stop
        self.saved_step: int | None = None
        self.last_checkpoint: Path | None = None
        # Every loss up to checked_step is known finite; all_finite covers the later ones.
        self.checked_step = 0
        self.all_finite = torch.ones((), dtype=torch.bool, device=self.device)
        self.stopped_at = 0  # the step a callback's StopTraining ended training at
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
        while self.step < self.total_steps and self.stopped is None:
            self._run_epoch()

    @property
    def stopped(self) -> dict[str, Any] | None:
        """Where and why a callback ended training early (StopTraining), or None."""
        if self.log.stop_reason is None:
            return None
        return {"step": self.stopped_at, "reason": self.log.stop_reason}

    def _run_epoch(self) -> None:
        self.epoch_order_state = self.order_generator.get_state()
        order = torch.randperm(len(self.train_split), generator=self.order_generator)
        order = order.to(self.device)
        for batch in range(self.epoch_batch, self.steps_per_epoch):
            if self.step >= self.total_steps:
                break
            indices = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            # Each process trains its slice of the one global batch (all of it, alone).
            indices = indices.chunk(self.ranks.world_size)[self.ranks.rank]
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
            if self.log.stop_reason is not None:
                break  # a callback asked: end here, validating as an epoch end does
        self._verify_finite()
        loss_sum = all_sum(self.epoch_loss_sum.clone(), self.ranks) / self.ranks.world_size
        self._end_epoch(loss_sum.item() / max(self.epoch_batch, 1))
        self.epoch_batch = 0
        self.epoch_loss_sum = torch.zeros((), device=self.device)
        self.epoch_order_state = self.order_generator.get_state()
        if self.log.stop_reason is not None:
            self.stopped_at = self.step
        self._save_checkpoint()
        self._stop_if_requested()

    def _train_step(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.step_fn(self.train_split.images[indices], self.train_split.labels[indices])

    def _record_batch(self, loss: torch.Tensor, correct: torch.Tensor, size: int) -> None:
        self._verify_finite()
        # The global batch's figures: each process's mean loss and count, summed.
        totals = all_sum(torch.stack([loss.float(), correct.float()]), self.ranks)
        self.log.record({
            "kind": "batch",
            "step": self.step,
            "epoch": self.epoch,
            "loss": totals[0].item() / self.ranks.world_size,
            "accuracy": totals[1].item() / (size * self.ranks.world_size),
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": self.elapsed(),
            "time": time.time(),
        })  # fmt: skip

    @property
    def epoch(self) -> float:
        return round(self.step / self.steps_per_epoch, 4)

    def _end_epoch(self, train_loss: float) -> None:
        try:
            validation = evaluate(
                self.model, self.val_split.images, self.val_split.labels, split="val",
                num_classes=self.num_classes, batch_size=self.config.eval_batch_size,
                ranks=self.ranks,
            )  # fmt: skip
        except NonFiniteOutputs as error:
            raise TrainingDiverged(
                f"training stopped at step {self.step}: {error}; try a lower --lr "
                f"(now {self.config.lr:g}) and train again"
            ) from None
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
        if self.device.type == "cpu" and not self.ranks.distributed:
            self._verify_finite()  # (under torchrun: agreed in _stop_if_requested's reduction)

    def _verify_finite(self, weights: bool = False) -> None:
        """Stop with TrainingDiverged if a loss since the last check (or a weight) is NaN or inf."""
        first = self.checked_step + 1
        finite = bool(self.all_finite)
        if self.ranks.distributed:  # every rank stops at the same check, or none does
            finite = not all_max([int(not finite)], self.ranks, self.device)[0]
        if not finite:
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
        # Each rank's own dropout state, so a resume goes on with every rank's draws.
        rank_rng = gather(random_state(self.device), self.ranks)
        if self.ranks.is_main:  # the others' states are the same: rank 0 writes for all
            self.last_checkpoint = self.checkpoints.save(self.step, self.state(rank_rng))
        else:
            self.last_checkpoint = self.checkpoints.path_for(self.step)
        self.saved_step = self.step

    def _stop_if_requested(self) -> None:
        # Every process stops at the same step, whichever of them had the signal, or
        # whichever's callback asked (a sweep's pruner runs on rank 0 alone), or whichever
        # saw a loss go NaN (on the CPU, where each step is checked): one reduction a step.
        mine = self.stop_requests.received if self.stop_requests is not None else None
        unchecked = self.ranks.distributed and self.device.type == "cpu"
        received, callback_stop, diverged = all_max(
            [mine or 0, int(self.log.stop_reason is not None),
             int(unchecked and not bool(self.all_finite))],
            self.ranks, self.device,
        )  # fmt: skip
        if diverged:
            self._verify_finite()  # raises on every rank
        if callback_stop and self.log.stop_reason is None:
            self.log.stop_reason = "another process's callback asked to stop"
            self.stopped_at = self.step
        if not received:
            return
        name = signal.Signals(received).name
        if self.checkpoints is None:
            raise TrainingInterrupted(
                f"interrupted by {name} at step {self.step}; the run had no folder, so "
                "nothing was saved", received,
            )  # fmt: skip
        self._save_checkpoint()
        run_dir = shlex.quote(str(self.checkpoints.run_dir))
        raise TrainingInterrupted(
            f"interrupted by {name} at step {self.step}; checkpoint "
            f"{self.last_checkpoint} written; resume with: seqmnist train --resume {run_dir}",
            received,
        )

    def state(self, rank_rng: list[Any]) -> dict[str, Any]:
        """Everything a resumed run needs to go on exactly as this one would."""
        best = self.best_validation
        return {
            "step": self.step,
            "epoch_batch": self.epoch_batch,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_order_state": self.epoch_order_state,
            "torch_rng": torch.get_rng_state(),  # dropout on the CPU
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            # Under torchrun, every rank's (CPU state, CUDA state or None), in rank order.
            "rank_rng": rank_rng if self.ranks.distributed else [],
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule is not None else None,
            "best_model": self.best_state,
            "best_step": self.best_step,
            "best_validation": dataclasses.asdict(best) if best is not None else None,
            "train_seconds": self.elapsed(),
            "runtime": self.runtime.to_dict(),
            # Why compiling failed, if it did: the resumed run goes on eagerly too.
            "compile_failure": self.step_fn.forward.failure,
        }

    def _compare_runtime(self, saved: dict[str, Any]) -> None:
        """Say so when this process decides otherwise than the one that wrote the checkpoint."""
        now = self.runtime.to_dict()
        changed = [
            f"{key} {saved[key]} then, {now[key]} now"
            for key in ("device", "precision", "threads", "world_size")
            if key in saved and saved[key] != now[key]
        ]
        if changed:
            logger.warning(
                "resuming on a different runtime (%s): the result will not be bit-identical "
                "to a run that never stopped", "; ".join(changed),
            )  # fmt: skip

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
        if failure := state.get("compile_failure"):
            self.step_fn.forward.give_up(failure)
        self._compare_runtime(state.get("runtime") or {})
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and len(state["cuda_rng"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        ranks_saved = state.get("rank_rng") or []
        if self.ranks.rank < len(ranks_saved):
            set_random_state(self.device, tuple(ranks_saved[self.ranks.rank]))
        elif self.ranks.rank > 0:  # more processes than wrote it: a fresh draw of its own
            torch.manual_seed(rank_seed(self.config.seed + self.step, self.ranks.rank))
