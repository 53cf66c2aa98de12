"""Where training records go: metrics.jsonl, a progress bar or log lines, callbacks."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from seqmnist.errors import ConfigError
from seqmnist.files import atomic_write_bytes
from seqmnist.metrics import Record, encode_record, read_records

logger = logging.getLogger("seqmnist.train")


TENSORBOARD_DIR = "tensorboard"  # inside the run directory, with --tensorboard


class StopTraining(Exception):
    """Raised by a callback to end training cleanly: a sweep's pruner, an early stop.

    The loop finishes the step it is on, validates, and ends as if its budget
    were spent: the best weights so far are evaluated and saved, and the
    run's summary records the step and this message as ``stopped``.
    """


class MetricsLog:
    """Appends every record to metrics.jsonl and shows it on a bar or as a log line.

    A callback may raise StopTraining; ``stop_reason`` then holds its message
    for the loop, which stops at its next chance.
    """

    def __init__(
        self,
        path: Path | None,
        total_steps: int,
        progress: bool | None = None,
        callbacks: tuple[Callable[[Record], None], ...] = (),
    ) -> None:
        self.path = path
        self.callbacks = callbacks
        self.callback_seconds = 0.0
        self.stop_reason: str | None = None
        show_bar = sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(total=total_steps, unit="step", dynamic_ncols=True) if show_bar else None
        # Open for the whole run, closed by close(): records are appended as they come.
        self._handle = open(path, "a") if path is not None else None  # noqa: SIM115

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def record(self, record: Record) -> None:
        if self._handle is not None:
            self._handle.write(encode_record(record))
            self._handle.flush()
        started = time.perf_counter()
        for callback in self.callbacks:
            try:
                callback(record)
            except StopTraining as stop:
                self.stop_reason = self.stop_reason or str(stop) or "a callback asked to stop"
        # Callbacks (a benchmark's test evaluation, say) are not training time.
        self.callback_seconds += time.perf_counter() - started
        line = format_record(record)
        if self.bar is None:
            logger.info(line)
        elif record["kind"] == "batch":
            self.bar.set_postfix_str(line.split(": ", 1)[-1], refresh=False)
        else:
            self.bar.write(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._handle is not None:
            self._handle.close()
        for callback in self.callbacks:
            if isinstance(callback, TensorBoardLog):
                callback.close()


class TensorBoardLog:
    """A callback writing every numeric field of each record as a TensorBoard scalar.

    Tags are ``kind/field`` (batch/loss, epoch/val_accuracy, ...). The tensorboard
    package is imported only here, so training never needs it unless asked.
    """

    def __init__(self, directory: Path, purge_after: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:
            raise ConfigError(
                f"tensorboard logging needs the tensorboard package ({error}); "
                "install it with: pip install 'seqmnist[tensorboard]'"
            ) from None
        # On resume, hide what the stopped run logged after its checkpoint.
        purge_step = purge_after + 1 if purge_after is not None else None
        self.writer = SummaryWriter(str(directory), purge_step=purge_step)

    def __call__(self, record: Record) -> None:
        for key, value in record.items():
            if key not in ("kind", "step", "epoch", "time") and isinstance(value, (int, float)):
                self.writer.add_scalar(
                    f"{record['kind']}/{key}", value, record["step"], walltime=record.get("time")
                )
        if record["kind"] == "epoch":
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def keep_records_through(path: Path, step: int) -> None:
    """Drop the records after ``step`` so a run resumed from there appends without repeats.

    Records are in step order; a last line cut short by the interruption is dropped too.
    """
    if not path.exists():
        return
    kept = [record for record in read_records(path) if record["step"] <= step]
    atomic_write_bytes(path, "".join(map(encode_record, kept)).encode())


def format_record(record: Record) -> str:
    if record["kind"] == "batch":
        return (
            f"step {record['step']}: loss {record['loss']:.4f} "
            f"acc {record['accuracy']:.4f} lr {record['lr']:.2e}"
        )
    return (
        f"epoch {record['epoch']:g} (step {record['step']}): train loss {record['train_loss']:.4f} "
        f"val loss {record['val_loss']:.4f} val acc {record['val_accuracy']:.4f}"
    )
