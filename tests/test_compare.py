"""seqmnist compare: what differs between runs, and how they did."""

import json

import pytest

from seqmnist.api import make_config, train
from seqmnist.cli import main


@pytest.fixture(scope="module")
def two_runs(stripes_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    for name, cell, hidden in (("lstm", "lstm", "8"), ("gru", "gru", "12")):
        config = make_config("default", dataset=str(stripes_dir), validation_size=100,
                             cell=cell, hidden_sizes=hidden, steps=20, device="cpu")  # fmt: skip
        train(config, folder / name, progress=False)
    return folder / "lstm", folder / "gru"


def test_compare_shows_the_differences_and_results(two_runs, capsys):
    assert main(["compare", *map(str, two_runs), "--json"]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["differences"] == {
        "model.cell": ["lstm", "gru"],
        "model.hidden_sizes": [[8], [12]],
    }
    assert set(comparison["results"]) >= {"test_accuracy", "train_seconds", "params"}
    assert comparison["results"]["params"][0] != comparison["results"]["params"][1]

    assert main(["compare", *map(str, two_runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["run", "lstm", "gru"]
    assert any(line.split()[:3] == ["model.cell", "lstm", "gru"] for line in lines)
    assert any(line.startswith("params") for line in lines)


def test_a_run_compared_with_itself_has_no_differences(two_runs, capsys):
    assert main(["compare", str(two_runs[0]), str(two_runs[0])]) == 0
    assert "(same configuration)" in capsys.readouterr().out
