"""One model on a thread of its own, preparing and answering waiting requests as one batch.

Requests that arrive while a batch is being computed wait in the queue and
all go into the next batch: a lone request waits for nothing, and under
load the model runs on batches instead of one image at a time. The thread
also makes each small image file MNIST-like (decode.py), so a request
crosses threads once each way; and a batch's answers go back to the event
loop in one call, so the loop wakes once per batch, not once per request.
The loop itself only hands over bytes and awaits futures: it never waits
for a decode or for the model.

Measured with benchmarks/serve_load.py (see BENCHMARKS.md): with one torch
thread, this costs less CPU per request than a thread hop for decoding plus
one for inference, each settled separately, and no request holds the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from seqmnist.errors import ImageError
from seqmnist.use.explain import step_ends, step_probabilities
from seqmnist.use.predict import Predictor, softmax_in_batches
from seqmnist.use.serve.decode import Source, prepare

log = logging.getLogger(__name__)


class Busy(Exception):
    """More requests are waiting than the server will queue."""


@dataclass(frozen=True)
class Answer:
    image: np.ndarray  # (H, W) float32 in [0, 1]: what the model read
    probabilities: np.ndarray  # (classes,)
    steps: tuple[int, ...] | None  # steps read at each point, 1-based
    step_probabilities: np.ndarray | None  # (points, classes)


@dataclass(frozen=True)
class _Job:
    source: Source
    name: str
    with_steps: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


class Batcher:
    def __init__(self, predictor: Predictor, max_batch: int = 64, max_waiting: int = 1024) -> None:
        self.predictor = predictor
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_waiting)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="seqmnist-batcher", daemon=True)
        self._thread.start()

    async def answer(self, source: Source, name: str, with_steps: bool = False) -> Answer:
        """The model's answer; raises ImageError when ``source`` cannot be made an image."""
        if self._closed or not self._thread.is_alive():
            raise Busy  # closing (or, after a bug, no thread to answer): never a hang
        loop = asyncio.get_running_loop()
        job = _Job(source, name, with_steps, loop, loop.create_future())
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy from None
        return await job.future

    def close(self) -> None:
        """Finish the queued requests, then stop the thread."""
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            jobs = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:  # closing: answer what was gathered, then stop
                    self._settle(jobs, self._outcomes(jobs))
                    return
                jobs.append(job)
            self._settle(jobs, self._outcomes(jobs))

    def _outcomes(self, jobs: list[_Job]) -> list[Answer | BaseException]:
        """Each job's answer, or the error that is its answer; one bad image spoils no other."""
        outcomes: list[Answer | BaseException | None] = [None] * len(jobs)
        ready: dict[int, np.ndarray] = {}
        for index, job in enumerate(jobs):
            try:
                ready[index] = prepare(job.source, self.predictor.image_shape, job.name)
            except ImageError as error:
                outcomes[index] = error
            except (
                Exception
            ) as error:  # a bug in preparing: that request's 500, not the thread's end
                log.exception("preparing %s failed", job.name)
                outcomes[index] = error
        if ready:
            try:
                answers = self._compute(list(ready.values()), [jobs[i].with_steps for i in ready])
            except Exception as error:  # every request in the batch gets it; the thread goes on
                log.exception("inference failed for a batch of %d", len(ready))
                answers = [error] * len(ready)
            for index, answer in zip(ready, answers, strict=True):
                outcomes[index] = answer
        return outcomes

    def _settle(self, jobs: list[_Job], outcomes: list) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job.future, outcome))
        for loop, settled in by_loop.items():
            # RuntimeError: that loop has closed, and nobody waits for these answers.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_set_all, settled)

    def _compute(self, images: list[np.ndarray], with_steps: list[bool]) -> list[Answer]:
        model = self.predictor.model
        batch = torch.from_numpy(np.stack(images))  # (B, H, W)
        probabilities = softmax_in_batches(model, batch, self.max_batch)  # (B, C)
        self.predictor.check_finite(probabilities)
        wanted = [index for index, want in enumerate(with_steps) if want]
        ends = step_ends(model.view.steps)
        per_step = {}
        if wanted:
            device = next(model.parameters()).device
            rows = step_probabilities(model, batch[wanted].to(device), ends).cpu()
            per_step = dict(zip(wanted, rows.numpy(), strict=True))  # index -> (S, C)
        return [
            Answer(image, row, tuple(ends) if index in per_step else None, per_step.get(index))
            for index, (image, row) in enumerate(zip(images, probabilities.numpy(), strict=True))
        ]


def _set_all(settled: list[tuple[asyncio.Future, Answer | BaseException]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled: its client went away
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
