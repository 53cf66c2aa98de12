"""Help that tells the truth: the defaults shown are the ones used, in plain words."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
from test_cli import ALL_COMMANDS

from seqmnist.cli import build_parser, main
from seqmnist.cli.presets import to_toml
from seqmnist.config import RunConfig, load_toml, option_fields, setting
from seqmnist.presets import PRESETS, get_preset


def help_text(command, capsys) -> str:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def train_actions():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {action.dest: action for action in subparsers.choices["train"]._actions}


def test_train_help_shows_the_values_a_plain_train_uses():
    actions = train_actions()
    used = get_preset("default")
    for name, (section, _) in option_fields().items():
        value = setting(used, section, name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        shown = "none" if shown is None else shown
        assert actions[name].help.endswith(f"(default: {shown})"), (name, actions[name].help)
    # The three the issue found wrong: the default preset's, not the dataclass's.
    assert actions["lr"].help.endswith("(default: 0.013398931574894671)")
    assert actions["schedule"].help.endswith("(default: onecycle)")
    assert actions["epochs"].help.endswith("(default: 6.0)")


def test_choice_options_are_checked_by_the_parser_with_their_choices_listed(capsys):
    actions = train_actions()
    for name in ("view", "cell", "readout", "optimizer", "schedule", "device", "precision"):
        section, field = option_fields()[name]
        assert tuple(actions[name].choices) == field.metadata["choices"]
    assert "{rows,columns,pixels,permuted}" in help_text(["train"], capsys)


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_help_has_no_doubled_defaults_tuples_or_escaped_percents(command, capsys):
    text = help_text(command, capsys)
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
    assert "%%" not in text
    assert not re.search(r"\('[^']*', '", text), "choices printed as a Python tuple"


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_name_prints_every_setting_as_toml_that_train_reads_back(name, tmp_path, capsys):
    assert main(["presets", name]) == 0
    path = tmp_path / f"{name}.toml"
    path.write_text(capsys.readouterr().out)
    assert load_toml(path, RunConfig()) == get_preset(name)
    assert to_toml(get_preset(name)) in path.read_text()
    assert main(["presets", name, "--json"]) == 0
    assert RunConfig.from_dict(json.loads(capsys.readouterr().out)) == get_preset(name)


def test_presets_with_an_unknown_name_is_one_line(capsys):
    assert main(["presets", "nosuch"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "seqmnist: error: unknown preset 'nosuch'; choose one of " + ", ".join(PRESETS)
    ]


def test_train_prints_a_readable_summary_and_json_on_request(stripes_dir, tmp_path, capsys):
    argv = ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--steps", "4",
            "--hidden-sizes", "8", "--batch-size", "32", "--device", "cpu", "--no-progress"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "test accuracy" in out and f"seqmnist eval {tmp_path / 'a'}" in out
    assert main([*argv, "--out", str(tmp_path / "b"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout is the JSON object alone
    assert summary == json.loads((tmp_path / "b" / "summary.json").read_text())


def test_every_config_field_has_help_without_its_own_default():
    for _, field in option_fields().values():
        assert field.metadata["help"], field.name
        assert "default" not in field.metadata["help"], field.name
    assert {f.name for f in dataclasses.fields(RunConfig)} >= {"data", "model", "train"}
    assert Path(__file__).name  # the module runs from tests/cli
