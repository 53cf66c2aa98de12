"""The real MNIST, end to end: a short run learns, and `eval` reproduces its summary."""

import json

import pytest

from seqmnist.cli import main


@pytest.mark.slow
def test_short_mnist_run_learns_and_eval_reproduces_the_summary(mnist_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["train", "--preset", "default", "--data-dir", str(mnist_dir), "--hidden-sizes", "64",
            "--steps", "400", "--lr", "0.01", "--device", "cpu", "--no-progress",
            "--out", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.93  # chance is 0.10; this run lands near 0.96
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["n"] == 10_000
    assert evaluation["accuracy"] == summary["test_accuracy"]
    assert evaluation["loss"] == summary["test_loss"]  # the same evaluation, exactly


@pytest.mark.slow
def test_eval_on_the_test_split_needs_only_the_test_files(mnist_run, tmp_path, capsys):
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    source = json.loads((mnist_run / "config.json").read_text())["data"]["data_dir"]
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (only_test / name).symlink_to(f"{source}/{name}")
    capsys.readouterr()
    assert main(["eval", str(mnist_run), "--data-dir", str(only_test), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    summary = json.loads((mnist_run / "summary.json").read_text())
    assert (evaluation["accuracy"], evaluation["loss"]) == (
        summary["test_accuracy"], summary["test_loss"]
    )  # fmt: skip
    assert sorted(path.name for path in only_test.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
    ]  # nothing was downloaded  # fmt: skip


def test_eval_finds_the_data_a_run_was_trained_on_without_the_variable(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    # `make train` sets SEQMNIST_DATA_DIR; the user's shell afterwards may not.
    monkeypatch.setenv("SEQMNIST_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    run_dir = tmp_path / "run"
    argv = ["train", "--hidden-sizes", "8", "--steps", "5", "--device", "cpu",
            "--no-progress", "--out", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    monkeypatch.delenv("SEQMNIST_DATA_DIR")
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data_folder"] == str(mnist_dir.absolute())
    assert evaluation["accuracy"] == summary["test_accuracy"]
    assert not (tmp_path / "empty-cache").exists()  # nothing was downloaded
