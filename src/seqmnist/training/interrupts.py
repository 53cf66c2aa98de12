"""SIGINT and SIGTERM during training: finish the step, save, then stop.

The library installs no signal handlers of its own: a process's handlers are
its owner's. The CLI (or any program that wants the same) enters a
``StopRequests`` and hands it to ``train(stop=...)``; the loop only reads it.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

logger = logging.getLogger("seqmnist.train")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While entered, SIGINT and SIGTERM only set ``received``; the loop decides when to stop.

    A second signal changes nothing (a checkpoint being written is never cut
    short). The previous handlers come back on exit. Signal handlers can only
    be set from the main thread; elsewhere entering installs nothing, and
    ``request`` is the way to ask a run to stop.
    """

    def __init__(self) -> None:
        self.received: int | None = None  # the first signal's number
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {
                number: signal.signal(number, self._handle) for number in STOP_SIGNALS
            }
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def request(self, number: int = signal.SIGINT) -> None:
        """Ask the run to stop as that signal would (from another thread, say)."""
        self._handle(number, None)

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = number
            logger.warning(
                "%s received: stopping after this step (and its checkpoint, in a run folder)",
                signal.Signals(number).name,
            )
        else:
            logger.warning("already stopping; waiting for the checkpoint to be written")
