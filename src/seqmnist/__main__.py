"""The `seqmnist` command and `python -m seqmnist`.

Kept to almost nothing before its ``try``: Ctrl-C or SIGTERM while the command
line is still being imported ends with one line and exit status 130 or 143,
as it does later. (Before this code runs, the interpreter itself is starting;
a signal then has its default effect, which no program can change.)
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import NoReturn

INTERRUPTED = 128 + signal.SIGINT


def main() -> int:
    # Replaced by the command line's own handler once it is imported.
    signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from seqmnist.cli import main as run_command_line
    except (KeyboardInterrupt, RuntimeError) as error:
        # Python 3.11 wraps an exception raised inside a class's __set_name__
        # (a dataclass field being defined) in RuntimeError: a Ctrl-C landing
        # there arrives as RuntimeError("Error calling __set_name__ ...") from
        # KeyboardInterrupt (seen once in a CI run), and SIGTERM's SystemExit
        # the same way.
        stop = _stop_behind(error)
        if isinstance(stop, SystemExit):
            raise stop from None  # SIGTERM while starting: its line is said already
        if stop is None:
            raise
        print(f"seqmnist: interrupted while starting; {_again()}", file=sys.stderr)
        return _leave_after_ctrl_c()
    status = run_command_line()
    return _leave_after_ctrl_c() if status == INTERRUPTED else status


def _stop_behind(error: BaseException | None) -> BaseException | None:
    """The KeyboardInterrupt or SystemExit that ``error`` is, or was raised from."""
    while error is not None:
        if isinstance(error, (KeyboardInterrupt, SystemExit)):
            return error
        error = error.__cause__
    return None


def _leave_after_ctrl_c() -> NoReturn:
    """Exit with status 130 now, everything said and written.

    CPython 3.11 marks a KeyboardInterrupt raised inside exec() of a string
    (dataclasses and namedtuple build their methods that way, at import) as
    unhandled even after it is caught, and then ends the process by SIGINT
    (status -2) instead of with the status returned: seen in 6 of 60
    interrupted starts. Nothing is left to clean up: files are written whole
    or not at all. Used for every interrupted command, not only while starting:
    the commands build dataclasses and import lazily too, so the same can
    happen later.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


def _terminated_while_starting(number, frame) -> None:
    print(f"seqmnist: terminated (SIGTERM) while starting; {_again()}", file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM)


def _again() -> str:
    # Nothing has run yet, so the next step is this very command.
    command = shlex.join(["seqmnist", *sys.argv[1:]]).replace("\n", "\\n")
    return f"run the same command again: {command}"


if __name__ == "__main__":
    sys.exit(main())
