"""The `seqmnist` command and `python -m seqmnist`.

Kept to almost nothing before its ``try``: Ctrl-C while the command line is
still being imported ends with one line and exit status 130, as it does later.
"""

import sys


def main() -> int:
    try:
        from seqmnist.cli import main as run_command_line
    except KeyboardInterrupt:
        print("seqmnist: interrupted while starting; run the command again", file=sys.stderr)
        return 130
    return run_command_line()


if __name__ == "__main__":
    sys.exit(main())
