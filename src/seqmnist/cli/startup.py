"""Starting and stopping a command: native imports with signals held, SIGTERM as an exception."""

from __future__ import annotations

import contextlib
import importlib
import signal
import threading
from collections.abc import Iterable, Iterator

# The native libraries most commands load first; a command's ``preload`` default replaces them.
PRELOAD = ("numpy", "torch", "safetensors.torch")


class Terminated(BaseException):
    """SIGTERM outside training, turned into an exception so it ends like Ctrl-C does."""


def preload(modules: Iterable[str]) -> None:
    """Import ``modules`` with SIGINT and SIGTERM held (see ``signals_held``)."""
    with signals_held():
        for module in modules:
            importlib.import_module(module)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then act on the first one.

    For importing native libraries: an import cut short by KeyboardInterrupt can
    leave an extension half-loaded, and the next import of it fails with
    "cannot load module more than once per process" (seen with numpy under torch),
    or a library swallows the interrupt. A Ctrl-C during the second or so this
    takes is acted on as soon as it ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        number: signal.signal(number, lambda number, frame: received.append(number))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt if received[0] == signal.SIGINT else Terminated


def ignore_stop_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)


def stop_signal_handlers() -> dict[int, object]:
    """The SIGINT and SIGTERM handlers now in place (none off the main thread), to restore later."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}


def restore_stop_signal_handlers(handlers: dict[int, object]) -> None:
    for number, handler in handlers.items():
        if handler is not None:  # None: set outside Python, which cannot be put back
            signal.signal(number, handler)


def raise_on_sigterm() -> None:
    """Make SIGTERM raise Terminated (on the main thread only, where handlers can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(number, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, handle)
