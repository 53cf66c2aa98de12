"""`seqmnist train`: train a preset, with a TOML file and options layered on top."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import typing
from pathlib import Path

from seqmnist.config import RunConfig, apply_overrides, field_type, load_toml, option_fields
from seqmnist.presets import get_preset


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
        "--preset", default="default", help="starting configuration (`seqmnist presets`)"
    )
    parser.add_argument(
        "--config", type=Path, help="TOML file with [data], [model], [train] tables"
    )
    parser.add_argument("--out", type=Path, help="run directory (default: runs/PRESET-TIME)")
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
    config = get_preset(args.preset)
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

    config = resolve_config(args)
    out = args.out or Path("runs") / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"training {config.name} -> {out}")
    result = train(config, out, progress=args.progress)
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
