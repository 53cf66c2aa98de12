"""`seqmnist train`: train a preset, with a TOML file and options layered on top."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

from seqmnist.cli.paths import one_line, path_argument
from seqmnist.cli.startup import ignore_stop_signals
from seqmnist.config import (
    RunConfig,
    apply_overrides,
    field_type,
    load_toml,
    option_fields,
    setting,
)
from seqmnist.distributed import environment_ranks
from seqmnist.errors import ConfigError, RunError, TrainingInterrupted
from seqmnist.presets import get_preset

if typing.TYPE_CHECKING:  # the training modules load torch: imported only when training
    from seqmnist.training import StopRequests, TrainResult

# What may still change when a run is resumed: where its data lives, and the display.
RESUME_OPTIONS = ("data_dir",)
# The preset a plain `seqmnist train` uses, whose values the help shows as defaults.
DEFAULT_PRESET = "default"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run directory",
        description=(
            "Train a recurrent classifier. Settings come from the preset, then --config, "
            "then the options below; config.json in the run directory records the result. "
            f"The defaults shown are the `{DEFAULT_PRESET}` preset's; another --preset brings "
            "its own (`seqmnist presets NAME` prints all of them)."
        ),
    )
    parser.add_argument(
        "--preset", help=f"starting configuration (`seqmnist presets`; default: {DEFAULT_PRESET})"
    )
    parser.add_argument(
        "--config",
        type=path_argument,
        help="TOML file with [data], [model], [train] tables, or a run's config.json",
    )
    parser.add_argument(
        "--out", type=path_argument, help="run directory, new or empty (default: runs/PRESET-TIME)"
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over in an --out folder that holds a run, deleting its weights and checkpoints",
    )  # fmt: skip
    parser.add_argument(
        "--resume", type=path_argument, metavar="DIR",
        help="continue the run in DIR from its newest intact checkpoint, with the settings "
        "in DIR/config.json (only --data-dir and --progress may be given with it)",
    )  # fmt: skip
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar (default: when stderr is a terminal)",
    )  # fmt: skip
    parser.add_argument(
        "--json", action="store_true", help="print the run's summary as one JSON object"
    )
    shown = get_preset(DEFAULT_PRESET)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, (section, field) in option_fields().items():
        if section not in groups:
            title = f"{section} options" if "." not in section else (
                f"{section.split('.')[1]} options (--cell {section.split('.')[1]} only)"
            )  # fmt: skip
            groups[section] = parser.add_argument_group(title)
        _add_field_option(groups[section], name, section, field, setting(shown, section, name))
    parser.set_defaults(handler=run, next_step=next_step)


def _add_field_option(group, name: str, section: str, field: dataclasses.Field, default) -> None:
    flag = "--" + name.replace("_", "-")
    help_text = f"{field.metadata.get('help', '')} (default: {_show(default)})"
    if field_type(section, name) is bool:
        group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)  # fmt: skip
    elif choices := field.metadata.get("choices"):
        group.add_argument(flag, dest=name, default=None, choices=choices, help=help_text)
    else:
        group.add_argument(flag, dest=name, default=None, metavar=_metavar(section, name),
                           help=help_text)  # fmt: skip


def _metavar(section: str, name: str) -> str:
    hint = field_type(section, name)
    if typing.get_origin(hint) is tuple:
        return "N,N,..."
    return name.upper()


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    config = get_preset(DEFAULT_PRESET if args.preset is None else args.preset)
    if args.config is not None:
        config = load_toml(args.config, config)
    overrides = {
        name: getattr(args, name)
        for name in option_fields()
        if getattr(args, name, None) is not None
    }
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        return _resume(args)
    config = resolve_config(args)
    if args.out is None and environment_ranks().distributed:
        # Each process would name its own folder after its own clock.
        raise ConfigError(
            "under torchrun, give the run folder with --out (every process writes to it)"
        )
    out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    args.out = out  # so that an interrupt's next step names the folder actually used
    from seqmnist.runs import check_new_run_dir

    check_new_run_dir(out, args.overwrite)  # before the slow imports and the data
    from seqmnist.training import train

    if not args.json and environment_ranks().is_main:  # --json: stdout holds the summary alone
        print(f"training {config.name} -> {out}")
    return _report(
        lambda stop: train(
            config, out, progress=args.progress, overwrite=args.overwrite, stop=stop
        ), out, args,
    )  # fmt: skip


def _resume(args: argparse.Namespace) -> int:
    given = [
        flag
        for flag, value in (
            ("--preset", args.preset),
            ("--config", args.config),
            ("--out", args.out),
            ("--overwrite", args.overwrite or None),
        )
        if value is not None
    ] + [
        "--" + name.replace("_", "-")
        for name in option_fields()
        if name not in RESUME_OPTIONS and getattr(args, name, None) is not None
    ]
    if given:
        raise ConfigError(
            f"--resume continues {args.resume} with the settings in its config.json, so "
            f"{', '.join(given)} cannot be given with it (only --data-dir and --progress can)"
        )
    if not args.resume.is_dir():
        what = "is a file" if args.resume.exists() else "does not exist"
        raise RunError(
            f"--resume {args.resume} {what}; give the run folder that train wrote (its --out)"
        )
    from seqmnist.runs import read_config

    name = read_config(args.resume).name
    from seqmnist.api import resume

    if not args.json and environment_ranks().is_main:
        print(f"resuming {name} in {args.resume}")
    return _report(
        lambda stop: resume(
            args.resume, data_dir=args.data_dir, progress=args.progress, stop=stop
        ),
        args.resume, args,
    )  # fmt: skip


def _report(
    train: Callable[[StopRequests], TrainResult], out: Path, args: argparse.Namespace
) -> int:
    """Run ``train``; print its summary, or how to go on if a signal stopped it."""
    from seqmnist.training import StopRequests

    try:
        # The command, not the library, owns the process's signals: while training,
        # SIGINT and SIGTERM ask the loop to finish its step and checkpoint.
        with StopRequests() as stop:
            result = train(stop)
    except TrainingInterrupted as stopped:
        ignore_stop_signals()  # on the way out: a second signal must not cut the message short
        if environment_ranks().is_main:  # under torchrun, one line for all
            print(f"seqmnist: {one_line(stopped)}", file=sys.stderr)
        return stopped.exit_code
    if not environment_ranks().is_main:
        return 0  # under torchrun rank 0 alone reports
    if args.json:
        print(json.dumps(result.summary))
    else:
        print(format_summary(result.summary, out))
    return 0


def next_step(args: argparse.Namespace) -> str:
    """What to do after Ctrl-C outside the training loop (importing, loading data, saving)."""
    from seqmnist.runs import CONFIG_FILE

    out = args.resume or args.out
    if out is not None and (out / CONFIG_FILE).is_file():
        return f"continue with: seqmnist train --resume {shlex.quote(str(out))}"
    return "nothing was written: run the same command again"


def format_summary(summary: dict, out: Path) -> str:
    runtime = summary["runtime"]
    quoted = shlex.quote(str(out))
    return "\n".join([
        f"test accuracy {summary['test_accuracy']:.4f}, loss {summary['test_loss']:.4f} "
        f"(the weights best on validation: {summary['val_accuracy']:.4f} at step "
        f"{summary['best_step']:,})",
        f"{summary['steps']:,} steps in {summary['train_seconds']:.1f} s "
        f"({summary['samples_per_second']:,.0f} samples/s) on {runtime['device']}, "
        f"{runtime['precision']}, {runtime['threads']} threads; {summary['params']:,} parameters",
        *_recipe_lines(summary.get("recipe")),
        f"run written to {out}; `seqmnist eval {quoted}` reproduces the test figures",
    ])  # fmt: skip


def _recipe_lines(recipe: dict | None) -> list[str]:
    """A partial run of a preset says so, with its budget, beside anything published."""
    if recipe is None:
        return []
    if recipe.get("longer"):
        return [
            f"longer run: {recipe['steps']:,} steps, past the {recipe['recipe_steps']:,} of "
            f"preset {recipe['preset']}'s recipe; not the recipe's figure"
        ]
    if not recipe["partial"]:
        return []
    lines = [
        f"partial run: {recipe['steps']:,} of the {recipe['recipe_steps']:,} steps of preset "
        f"{recipe['preset']}'s recipe; its figures are those of this budget, not the recipe's"
    ]
    published = recipe["published"]
    if published is not None and published["test_accuracy"] is not None:
        lines.append(
            f"(not comparable with the whole recipe's published "
            f"{100 * published['test_accuracy']:.2f}%, from {published['source']})"
        )
    return lines
