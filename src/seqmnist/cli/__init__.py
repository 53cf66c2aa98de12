"""The command line: a thin layer over the library. Only this package prints.

Importing it loads no torch: each command imports what it needs when it runs,
inside ``main``'s error handling, so even Ctrl-C during those imports ends
with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys

from seqmnist.cli import (
    bench,
    compare,
    data,
    evaluate,
    export,
    plot,
    predict,
    presets,
    serve,
    sweep,
    train,
)
from seqmnist.cli.paths import one_line
from seqmnist.cli.startup import (
    PRELOAD,
    Terminated,
    ignore_stop_signals,
    preload,
    raise_on_sigterm,
    restore_stop_signal_handlers,
    stop_signal_handlers,
)
from seqmnist.distributed import leave_process_group
from seqmnist.errors import SeqmnistError
from seqmnist.version import package_version

COMMANDS = (train, evaluate, predict, serve, export, plot, compare, sweep, presets, data, bench)


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage mistakes get one line saying what is wrong and where help is."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="seqmnist",
        description="Train, evaluate and use recurrent classifiers that read images as sequences.",
    )
    parser.add_argument("--version", action="version", version=f"seqmnist {package_version()}")
    subparsers = parser.add_subparsers(
        title="commands", dest="command", required=True, parser_class=OneLineErrorParser
    )
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    saved_handlers = stop_signal_handlers()
    raise_on_sigterm()
    args = None
    together = False  # whether every torchrun rank ends here as this one does
    try:
        args = build_parser().parse_args(argv)
        # Under torchrun every process runs this; rank 0 alone says what goes on.
        rank = os.environ.get("RANK", "0")
        level = logging.INFO if rank == "0" else logging.ERROR
        logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
        modules = getattr(args, "preload", PRELOAD)
        preload(modules)
        with _settings_if_computing(modules):
            status = args.handler(args) or 0
        # Finished, or stopped by a signal at one step on every rank: all leave together.
        together = status in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM)
        return status
    except SeqmnistError as error:
        print(f"seqmnist: error: {one_line(error)}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as stop:
        return _stopped(stop, args)
    except (MemoryError, RuntimeError) as error:
        # Python 3.11 wraps what a class's __set_name__ raises (a dataclass
        # being defined by a lazy import) in RuntimeError: a stop landing there.
        stop = _stop_behind(error)
        if stop is not None:
            return _stopped(stop, args)
        if not _out_of_memory(error):
            raise  # a bug in seqmnist: keep its traceback
        print(
            "seqmnist: error: out of memory; use a smaller model (--hidden-sizes), "
            "--batch-size or --eval-batch-size",
            file=sys.stderr,
        )
        return 1
    except BrokenPipeError:  # `seqmnist ... | head`: the reader left, nothing more to say
        sys.stderr.close()
        return 1
    except OSError as error:  # a file or device problem no command anticipated: still one line
        where = f": {error.filename}" if error.filename else ""
        print(
            f"seqmnist: error: {one_line(error.strerror or error)}{one_line(where)}",
            file=sys.stderr,
        )
        return 1
    finally:
        restore_stop_signal_handlers(saved_handlers)
        # Under torchrun: its threads end before the interpreter does. After a failed
        # collective this may fail too; the command's own line has been said already.
        with contextlib.suppress(Exception):
            leave_process_group(together=together)


def _stopped(stop: BaseException, args) -> int:
    """One line for a Ctrl-C or SIGTERM, and its exit status."""
    ignore_stop_signals()  # on the way out: a second Ctrl-C changes nothing
    # Files are written whole or not at all, so what to say is only what to do next.
    next_step = getattr(args, "next_step", None)
    hint = next_step(args) if next_step is not None else "run the same command again"
    if isinstance(stop, Terminated):
        print(f"seqmnist: terminated (SIGTERM); {one_line(hint)}", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"seqmnist: interrupted; {one_line(hint)}", file=sys.stderr)
    return 128 + signal.SIGINT


def _stop_behind(error: BaseException | None) -> BaseException | None:
    """The KeyboardInterrupt or Terminated that ``error`` was raised from, if any."""
    while error is not None:
        if isinstance(error, (KeyboardInterrupt, Terminated)):
            return error
        error = error.__cause__
    return None


def _settings_if_computing(modules) -> contextlib.AbstractContextManager:
    """The process settings of a command that computes (one that loads torch; see runtime.py)."""
    if "torch" not in modules:
        return contextlib.nullcontext()
    from seqmnist.runtime import process_settings_for_command

    return process_settings_for_command()


def _out_of_memory(error: BaseException) -> bool:
    """MemoryError, or the RuntimeError an allocator raises (torch.OutOfMemoryError on CUDA)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error).lower()
    return any(
        words in text for words in ("out of memory", "can't allocate memory", "not enough memory")
    )
