"""The command line: help for every command, one-line errors, and a full train/eval cycle."""

import json
import subprocess
import sys

import pytest

from seqmnist.cli import build_parser, main


def command_paths(parser, prefix=()):
    """Every (sub)command path, e.g. ("data", "verify")."""
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from command_paths(sub, prefix + (name,))


ALL_COMMANDS = list(command_paths(build_parser()))


def test_the_command_list_is_complete():
    assert {("train",), ("eval",), ("presets",), ("data", "download"), ("data", "verify")} <= set(
        ALL_COMMANDS
    )


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: seqmnist " + " ".join(command) in text
    assert len(text.splitlines()) >= 3


def test_train_help_lists_every_config_field(capsys):
    from seqmnist.config import option_fields

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in option_fields():
        assert "--" + name.replace("_", "-") in text


def test_presets_prints_one_line_each(capsys):
    from seqmnist.presets import PRESETS

    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--cell", "transformer"], "invalid choice: 'transformer'"),
        (["train", "--view", "spiral"], "invalid choice: 'spiral'"),
        (["train", "--lr", "-0.1"], "lr must be a positive number"),
        (["train", "--lr", "abc"], "not a valid float"),
        (["train", "--batch-size", "0"], "batch_size must be positive"),
        (["train", "--hidden-sizes", "0"], "hidden_sizes must be positive"),
        (["train", "--frobnicate", "1"], "unrecognized arguments"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["train", "--dataset", "/nonexistent/folder", "--steps", "1"], "/nonexistent/folder"),
    ],
)
def test_bad_input_gets_one_line_and_a_nonzero_exit(argv, complaint, tmp_path):
    process = subprocess.run(
        [sys.executable, "-m", "seqmnist", *argv, "--out", str(tmp_path / "run")]
        if argv[0] == "train"
        else [sys.executable, "-m", "seqmnist", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode != 0
    assert complaint in process.stderr
    assert "Traceback" not in process.stderr
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_train_then_eval_on_a_folder_dataset(stripes_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--steps", "30",
            "--hidden-sizes", "16", "--batch-size", "32", "--lr", "0.01", "--device", "cpu",
            "--no-progress", "--out", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert {"split", "accuracy", "loss", "n", "confusion"} <= evaluation.keys()
    assert evaluation["accuracy"] == summary["test_accuracy"]
    assert main(["eval", str(run_dir), "--split", "val"]) == 0
    assert "val: accuracy" in capsys.readouterr().out


def test_config_file_and_options_layer_in_order(stripes_dir, tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('[model]\ncell = "gru"\nhidden_sizes = [8]\n[train]\nsteps = 3\n')
    run_dir = tmp_path / "run"
    argv = ["train", "--config", str(config_file), "--hidden-sizes", "12", "--dataset",
            str(stripes_dir), "--validation-size", "100", "--no-progress", "--out", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["cell"] == "gru"  # from the file
    assert config["model"]["hidden_sizes"] == [12]  # the option wins
    assert config["train"]["steps"] == 3
