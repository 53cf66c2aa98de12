"""`seqmnist presets [NAME]`: list the presets, or print one's every setting."""

from __future__ import annotations

import argparse
import dataclasses
import json

from seqmnist.config import SECTIONS, RunConfig
from seqmnist.errors import ConfigError
from seqmnist.presets import PRESETS, get_preset


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets",
        help="list the presets, or show every setting of one",
        description=(
            "List the presets: seqmnist's default, the five reference programs, and for each "
            "recurrent family a row-MNIST recipe tuned here (row-NAME) and the published "
            "pixel and permuted-pixel recipes (pixel-NAME, permuted-NAME), each naming what "
            "its paper reports or saying that it reports nothing. With a "
            "NAME, print that preset's whole resolved configuration as TOML, which "
            "`seqmnist train --config FILE` reads back."
        ),
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="a preset to show in full")
    parser.add_argument("--json", action="store_true", help="print JSON instead")
    parser.set_defaults(handler=run, preload=())


def run(args: argparse.Namespace) -> int:
    if args.name is None:
        if args.json:
            print(json.dumps({name: make().description for name, make in PRESETS.items()}))
            return 0
        width = max(map(len, PRESETS))
        for name, make in PRESETS.items():
            print(f"{name:<{width}}  {make().description}")
        return 0
    config = get_preset(args.name)
    print(json.dumps(config.to_dict()) if args.json else to_toml(config))
    return 0


def to_toml(config: RunConfig) -> str:
    """The configuration as TOML; settings that are unset (none) are shown as comments."""
    values = config.to_dict()
    lines = [f"# seqmnist preset {config.name}: {config.description}"]
    lines += [f"{key} = {_toml_value(values[key])}" for key in ("name", "description")]
    lines.append("")
    tables: list[tuple[str, dict]] = []
    for section in ("data", "model", "train"):
        tables.append((section, values[section]))
        # A family's settings are a table of their own, after its section's plain values:
        # the chosen cell's, and any other family's that a preset changed.
        tables += [
            (f"{section}.{name}", value)
            for name, value in values[section].items()
            if isinstance(value, dict)
            and (name == config.model.cell or value != _defaults(section, name))
        ]
    for title, table in tables:
        lines.append(f"[{title}]")
        for name, value in table.items():
            if isinstance(value, dict):
                continue
            lines.append(f"# {name} = none" if value is None else f"{name} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines).rstrip()


def _defaults(section: str, name: str) -> dict:
    return dataclasses.asdict(SECTIONS[f"{section}.{name}"]())


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise ConfigError(f"cannot write {value!r} as TOML")
