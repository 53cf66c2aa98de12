"""The `seqmnist` command and `python -m seqmnist`.

Kept to almost nothing before its ``try``: Ctrl-C or SIGTERM while the command
line is still being imported ends with one line and exit status 130 or 143,
as it does later. (Before this code runs, the interpreter itself is starting;
a signal then has its default effect, which no program can change.)
"""

import shlex
import signal
import sys


def main() -> int:
    # Replaced by the command line's own handler once it is imported.
    signal.signal(signal.SIGTERM, _terminated_while_starting)
    try:
        from seqmnist.cli import main as run_command_line
    except KeyboardInterrupt:
        print(f"seqmnist: interrupted while starting; {_again()}", file=sys.stderr)
        return 130
    return run_command_line()


def _terminated_while_starting(number, frame) -> None:
    print(f"seqmnist: terminated (SIGTERM) while starting; {_again()}", file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM)


def _again() -> str:
    # Nothing has run yet, so the next step is this very command.
    command = shlex.join(["seqmnist", *sys.argv[1:]]).replace("\n", "\\n")
    return f"run the same command again: {command}"


if __name__ == "__main__":
    sys.exit(main())
