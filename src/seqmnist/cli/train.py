"""`seqmnist train`: train a preset, with a TOML file and options layered on top."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path

from seqmnist.config import RunConfig, apply_overrides, field_type, load_toml, option_fields
from seqmnist.errors import ConfigError, TrainingInterrupted
from seqmnist.presets import get_preset
from seqmnist.runs import read_config

if typing.TYPE_CHECKING:  # the training modules load torch: imported only when training
    from seqmnist.training import TrainResult

# What may still change when a run is resumed: where its data lives, and the display.
RESUME_OPTIONS = ("data_dir",)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model and write a run directory",
        description=(
            "Train a recurrent classifier. Settings come from the preset, then --config, "
            "then the options below; config.json in the run directory records the result."
        ),
    )
    parser.add_argument(
        "--preset", help="starting configuration (`seqmnist presets`; default: default)"
    )
    parser.add_argument(
        "--config", type=Path, help="TOML file with [data], [model], [train] tables"
    )
    parser.add_argument("--out", type=Path, help="run directory (default: runs/PRESET-TIME)")
    parser.add_argument(
        "--resume", type=Path, metavar="DIR",
        help="continue the run in DIR from its newest intact checkpoint, with the settings "
        "in DIR/config.json (only --data-dir and --progress may be given with it)",
    )  # fmt: skip
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar (default: when stderr is a terminal)",
    )  # fmt: skip
    for section in ("data", "model", "train"):
        group = parser.add_argument_group(f"{section} options")
        for field_section, field in option_fields().values():
            if field_section == section:
                _add_field_option(group, section, field)
    parser.set_defaults(handler=run)


def _add_field_option(group, section: str, field: dataclasses.Field) -> None:
    flag = "--" + field.name.replace("_", "-")
    default = field.default if field.default is not dataclasses.MISSING else None
    help_text = f"{field.metadata.get('help', '')} (default: {_show(default)})"
    if field_type(section, field.name) is bool:
        group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                           default=None, help=help_text)  # fmt: skip
    else:
        group.add_argument(flag, dest=field.name, default=None, metavar=_metavar(section, field),
                           help=help_text)  # fmt: skip


def _metavar(section: str, field: dataclasses.Field) -> str:
    hint = field_type(section, field.name)
    if typing.get_origin(hint) is tuple:
        return "N,N,..."
    return field.name.upper()


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def resolve_config(args: argparse.Namespace) -> RunConfig:
    config = get_preset(args.preset or "default")
    if args.config is not None:
        config = load_toml(args.config, config)
    overrides = {
        name: getattr(args, name)
        for name in option_fields()
        if getattr(args, name, None) is not None
    }
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    from seqmnist.training import train

    if args.resume is not None:
        return _resume(args)
    config = resolve_config(args)
    out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"training {config.name} -> {out}")
    return _report(lambda: train(config, out, progress=args.progress), out)


def _resume(args: argparse.Namespace) -> int:
    given = [
        flag
        for flag, value in (
            ("--preset", args.preset),
            ("--config", args.config),
            ("--out", args.out),
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
    from seqmnist.api import resume

    print(f"resuming {read_config(args.resume).name} in {args.resume}")
    return _report(
        lambda: resume(args.resume, data_dir=args.data_dir, progress=args.progress), args.resume
    )


def _report(train: Callable[[], TrainResult], out: Path) -> int:
    """Run ``train``; print its summary, or how to resume it if a signal stopped it."""
    try:
        result = train()
    except TrainingInterrupted as stopped:
        print(f"seqmnist: {stopped}", file=sys.stderr)
        return stopped.exit_code
    summary = result.summary
    print(json.dumps({key: summary[key] for key in (
        "test_accuracy", "test_loss", "val_accuracy", "params", "train_seconds", "samples_per_second"
    )}))  # fmt: skip
    print(
        f"test accuracy {summary['test_accuracy']:.4f} "
        f"(best validation {summary['val_accuracy']:.4f} at step {summary['best_step']}) "
        f"in {summary['train_seconds']:.1f} s; run written to {out}"
    )
    return 0
