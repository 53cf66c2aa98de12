"""The `seqmnist` command and `python -m seqmnist`.

Kept to almost nothing before its ``try``: Ctrl-C or SIGTERM while the command
line is still being imported ends with one line and exit status 130 or 143,
as it does later. (Before this code runs, the interpreter itself is starting;
a signal then has its default effect, which no program can change.)
"""

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
    except KeyboardInterrupt:
        print(f"seqmnist: interrupted while starting; {_again()}", file=sys.stderr)
        return _leave_after_ctrl_c()
    status = run_command_line()
    return _leave_after_ctrl_c() if status == INTERRUPTED else status


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
