"""A spec is checked whole before any trial starts: every problem is one line."""

import pytest

from seqmnist.sweep.spec import Range, load_spec

BAD = {
    "unknown top key": ('color = "red"\n', "unknown key 'color'"),
    "unknown field": ('[grid]\n"model.colour" = ["red"]\n', "model.colour"),
    "bad grid value": ('[grid]\n"model.cell" = ["lstm", "gru2"]\n', "gru2"),
    "empty grid list": ('[grid]\n"train.lr" = []\n', "non-empty list"),
    "repeated value": ('[grid]\n"train.lr" = [0.1, 0.1]\n', "lists a value twice"),
    "low above high": (
        'trials = 2\n[sample]\n"train.lr" = {low = 0.1, high = 0.01}\n',
        "must be below high",
    ),
    "log from zero": (
        'trials = 2\n[sample]\n"train.lr" = {low = 0.0, high = 0.1, log = true}\n',
        "needs low above 0",
    ),
    "range of a word": (
        'trials = 2\n[sample]\n"model.cell" = {low = 1, high = 2}\n',
        "is not a number",
    ),
    "fractional int": (
        'trials = 2\n[sample]\n"train.batch_size" = {low = 16.5, high = 64}\n',
        "whole number",
    ),
    "bad value at an end": (
        'trials = 2\n[sample]\n"train.lr" = {low = -1.0, high = 0.1}\n',
        "train.lr = -1.0",
    ),
    "no budget": ('[sample]\n"train.lr" = {low = 0.001, high = 0.1}\n', "needs trials"),
    "both spaces": (
        'trials = 2\n[grid]\n"train.lr" = [0.1]\n[sample]\n"model.cell" = ["gru"]\n',
        "not both",
    ),
    "seed swept": ('[grid]\n"train.seed" = [1, 2]\n', "seeds = [...]"),
    "field twice": ('[fixed]\n"lr" = 0.1\n[grid]\n"train.lr" = [0.1]\n', "in two tables"),
    "test metric": ('metric = "test_accuracy"\n', "the test set picks nothing"),
    "bad preset": ('base = "nonesuch"\n', "is not a preset"),
    "bad trials": ("trials = 0\n", "at least 1"),
    "bad option-name value": ("[grid]\nbatch_size = [64, 0]\n", "batch_size"),
    "required test figure": ("[require]\ntest_accuracy = 0.99\n", "the test set picks nothing"),
    "required unknown": ("[require]\nspeed = 3\n", "no field a run can be held to"),
    "required word": ('[require]\nval_accuracy = "high"\n', "must be a finite number"),
    "require not a table": ("require = 0.99\n", "must be a table"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_spec_is_one_line_and_no_sweep_starts(name, tmp_path, one_error_line):
    text, words = BAD[name]
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    out = tmp_path / "sweep"
    line = one_error_line(["sweep", "run", str(spec), "--out", str(out)], words)
    assert str(spec) in line
    assert not out.exists()  # nothing was created, no trial started


def test_bad_seeds_and_files(tmp_path, one_error_line):
    spec = tmp_path / "spec.toml"
    for seeds, words in (
        ("[0, 0]", "twice"),
        ("[]", "non-empty"),
        ("[-1]", "from 0"),
        ('"0"', "list"),
    ):
        spec.write_text(f"seeds = {seeds}\n")
        one_error_line(["sweep", "run", str(spec), "--out", str(tmp_path / "o")], words)
    spec.write_text("this is = not toml [")
    one_error_line(["sweep", "run", str(spec), "--out", str(tmp_path / "o")], "not valid TOML")
    one_error_line(
        ["sweep", "run", str(tmp_path / "none.toml"), "--out", str(tmp_path / "o")],
        "does not exist",
    )


def test_a_good_spec_reads_as_written(tmp_path):
    (tmp_path / "base.toml").write_text('[model]\ncell = "gru"\n')
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'config = "base.toml"\nmetric = "val_loss"\ntrials = 6\nseeds = [3, 4]\n'
        "[fixed]\nepochs = 1\nhidden_sizes = [32, 16]\n"
        '[sample]\n"train.lr" = {low = 1e-4, high = 1e-2, log = true}\n'
        '"train.batch_size" = {low = 32, high = 128, step = 32}\n"model.readout" = ["final", "mean"]\n'
    )
    loaded = load_spec(spec)
    assert loaded.base.model.cell == "gru" and loaded.direction == "minimize"
    assert loaded.fixed == {"train.epochs": 1, "model.hidden_sizes": "32,16"}
    assert loaded.sample["train.lr"] == Range(1e-4, 1e-2, log=True)
    assert loaded.sample["train.batch_size"] == Range(32, 128, step=32, integer=True)
    config = loaded.config_for({"train.lr": 0.001, "model.readout": "mean"}, seed=4)
    assert (config.train.lr, config.train.seed, config.model.hidden_sizes) == (0.001, 4, (32, 16))
    assert loaded.budget() == 6 and not loaded.is_grid


def test_a_bound_is_at_least_for_a_figure_maximised_and_at_most_for_one_minimised():
    from seqmnist.sweep.spec import shortfalls

    require = {"val_accuracy": 0.99, "train_seconds": 30.0}
    assert shortfalls(require, {"val_accuracy": 0.995, "train_seconds": 20.0}) == pytest.approx(
        {"val_accuracy": -0.005, "train_seconds": -10.0}
    )
    gaps = shortfalls(require, {"val_accuracy": 0.98, "train_seconds": None})
    assert gaps["val_accuracy"] == pytest.approx(0.01) and gaps["train_seconds"] == float("inf")
