"""Smoke tests of `seqmnist bench`: a few steps, every reported field present and consistent.

Speed itself is measured by the benchmark, never asserted here.
"""

import dataclasses
import json

import pytest
import torch
from native_kernels import needs_compiler

from seqmnist.bench.run import run_benchmark
from seqmnist.cli import main
from seqmnist.cli.bench import format_table
from seqmnist.presets import get_preset

RUNTIME = {
    "device", "device_name", "precision", "evaluation_precision", "threads", "cpu_flags",
    "torch_version", "python_version",
}  # fmt: skip
THROUGHPUT = {
    "train_samples_per_second", "baseline_train_samples_per_second", "train_speedup",
    "train_test_accuracy", "baseline_test_accuracy", "infer_samples_per_second",
    "latency_p50_ms", "latency_p99_ms",
}  # fmt: skip
TO_ACCURACY = {
    "seconds_to_98_5", "seconds_to_99_0", "test_accuracy", "accuracy_curve",
    "baseline_seconds_to_98_5", "baseline_seconds_to_99_0", "baseline_final_test_accuracy",
    "baseline_accuracy_curve", "speedup_to_98_5", "speedup_to_99_0",
}  # fmt: skip


@pytest.fixture(scope="module")
def stripes_result(stripes_dir, one_torch_thread):
    """The whole benchmark on the 6x5 stripes: both loops reach 99% in 10-15 of the 30 steps."""
    overrides = {"dataset": str(stripes_dir), "validation_size": 100, "device": "cpu",
                 "hidden_sizes": "8"}  # fmt: skip
    return run_benchmark(
        steps=12, to_accuracy=True, accuracy_steps=30, eval_every=5, overrides=overrides
    )


def test_bench_reports_runtime_throughput_and_both_times_to_accuracy(stripes_result):
    result = stripes_result
    assert result.keys() >= RUNTIME | THROUGHPUT | TO_ACCURACY
    assert result["device"] == "cpu" and result["threads"] == torch.get_num_threads()
    assert result["precision"] in ("fp32", "bf16") and result["evaluation_precision"] == "fp32"
    assert result["train_speedup"] == pytest.approx(
        result["train_samples_per_second"] / result["baseline_train_samples_per_second"]
    )
    assert result["latency_p50_ms"] <= result["latency_p99_ms"]


def test_both_loops_are_checked_at_the_same_steps_and_the_ratio_matches(stripes_result):
    result = stripes_result
    ours, baseline = result["accuracy_curve"], result["baseline_accuracy_curve"]
    assert [point["step"] for point in ours] == [point["step"] for point in baseline]
    assert [point["step"] for point in ours] == [5, 10, 15, 20, 25, 30]
    for key in ("98_5", "99_0"):
        our_seconds = result[f"seconds_to_{key}"]
        their_seconds = result[f"baseline_seconds_to_{key}"]
        assert our_seconds is not None and their_seconds is not None  # stripes are easy
        assert result[f"speedup_to_{key}"] == pytest.approx(their_seconds / our_seconds)
        # A target is first reached at a checked step, on that run's own clock.
        assert our_seconds in [point["seconds"] for point in ours]
        assert their_seconds in [point["seconds"] for point in baseline]
    assert result["baseline_final_test_accuracy"] == baseline[-1]["test_accuracy"]
    table = format_table(result)
    assert "to 99.0%" in table and "times sooner" in table


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--preset", "nosuch"], "unknown preset 'nosuch'"),
        (["--to-accuracy", "--accuracy-preset", "nosuch"], "unknown preset 'nosuch' and no such"),
        (["--preset", "ref1-stacked"], "the baseline mirrors"),
        (["--steps", "99999999999"], "steps must be at most"),
        (["--compile", "on"], "--compile applies to --cells only"),
    ],
)
def test_bad_values_get_one_line(argv, complaint, capsys):
    assert main(["bench", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert complaint in error and len(error.splitlines()) == 1


@pytest.mark.parametrize("value", ["0", "-3", "abc"])
def test_bad_counts_are_refused_by_the_parser(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--batch-size", value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "--batch-size" in error and len(error.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_gets_one_line(capsys):
    assert main(["bench", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_help_shows_single_percent_signs(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = capsys.readouterr().out
    assert "98.5%" in text and "%%" not in text


@pytest.mark.slow
def test_bench_cli_on_mnist_prints_one_json_object(mnist_dir, one_torch_thread, capsys):
    argv = ["bench", "--steps", "12", "--data-dir", str(mnist_dir), "--device", "cpu",
            "--to-accuracy", "--accuracy-steps", "10", "--eval-every", "5", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result.keys() >= RUNTIME | THROUGHPUT | TO_ACCURACY
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert 0.0 <= result["baseline_final_test_accuracy"] <= 1.0


@pytest.fixture(scope="module")
def cell_speeds(stripes_dir, one_torch_thread):
    """Every family's speed on the 6x5 stripes (6 and 30 steps), one short window each."""
    from seqmnist.bench.cells import measure_cells
    from seqmnist.data import load_dataset
    from seqmnist.model.options import CELLS
    from seqmnist.runtime import Runtime

    splits = load_dataset(str(stripes_dir), None, 100)
    return measure_cells(
        CELLS, splits, Runtime.resolve("cpu", "fp32"), batch_size=16, rounds=1,
        target_seconds=0.001, compile="off",
    )  # fmt: skip


def test_cells_bench_measures_every_family_by_rows_and_by_pixels(cell_speeds):
    from seqmnist.bench.cells import model_for, ratios
    from seqmnist.model.options import CELLS

    order = ["lstm", *(cell for cell in CELLS if cell != "lstm")]  # the reference first
    assert [(s.cell, s.view) for s in cell_speeds] == [
        (cell, view) for view in ("rows", "pixels") for cell in order
    ]
    assert {s.view: s.sequence_length for s in cell_speeds} == {"rows": 6, "pixels": 30}
    for speed in cell_speeds:
        assert speed.params > 0
        assert speed.train_samples_per_second > 0 and speed.infer_samples_per_second > 0
    assert ratios(cell_speeds)[("lstm", "rows")] == (1.0, 1.0)
    # Each family at its row preset's size, the reference at row-lstm's.
    assert model_for("lru") == dataclasses.replace(get_preset("row-lru").model, dropout=0.0)
    assert model_for("lstm") == get_preset("row-lstm").model
    # Speed of the family, not of a recipe's dropout masks (the LSTM has none).
    assert all(model_for(cell).dropout == 0.0 for cell in CELLS)


def test_cells_bench_compiles_the_steps_a_full_run_of_the_view_preset_would():
    import dataclasses

    from seqmnist.bench.cells import compiled_as_trained
    from seqmnist.runtime import Runtime

    fp32 = Runtime(torch.device("cpu"), "fp32", 1)
    bf16 = dataclasses.replace(fp32, precision="bf16")
    mnist = 55_000
    # By pixels, LRU's preset runs 100 epochs: in bf16, long enough to repay compiling.
    assert compiled_as_trained("lru", "pixels", 784, bf16, "auto", mnist)
    # Not in fp32, by rows, or on a tiny data set; nor a family it does not pay for.
    assert not compiled_as_trained("lru", "pixels", 784, fp32, "auto", mnist)
    assert not compiled_as_trained("lru", "rows", 28, bf16, "auto", mnist)
    assert not compiled_as_trained("lru", "pixels", 784, bf16, "auto", 500)
    assert not compiled_as_trained("lstm", "pixels", 784, bf16, "auto", mnist)
    assert not compiled_as_trained("gru", "pixels", 784, bf16, "auto", mnist)  # no preset
    assert compiled_as_trained("lstm", "rows", 28, fp32, "on", mnist)
    assert not compiled_as_trained("lru", "pixels", 784, bf16, "off", mnist)


@needs_compiler
def test_cells_bench_times_the_compiled_step_where_training_would_compile(
    stripes_dir, one_torch_thread, monkeypatch
):
    from seqmnist.bench import cells
    from seqmnist.data import load_dataset
    from seqmnist.runtime import Runtime

    # One compile: as if only minGRU's row preset were long enough to repay it.
    monkeypatch.setattr(
        cells, "compiled_as_trained", lambda cell, view, *_: (cell, view) == ("mingru", "rows")
    )
    splits = load_dataset(str(stripes_dir), None, 100)
    speeds = cells.measure_cells(
        ["mingru"], splits, Runtime.resolve("cpu", "fp32"), batch_size=16, rounds=1,
        target_seconds=0.001,
    )  # fmt: skip
    assert [(s.cell, s.view, s.compiled) for s in speeds] == [
        ("lstm", "rows", False), ("mingru", "rows", True),
        ("lstm", "pixels", False), ("mingru", "pixels", False),
    ]  # fmt: skip
    assert all(s.train_samples_per_second > 0 for s in speeds)


def test_cells_table_names_the_machine_and_every_family(cell_speeds):
    import dataclasses

    from seqmnist.cli.bench import format_cells_table

    result = {
        "batch_size": 16, "rounds": 1, "cells": [dataclasses.asdict(s) for s in cell_speeds],
        "device": "cpu", "device_name": "a CPU", "threads": 1, "torch_version": torch.__version__,
        "precision": "fp32", "cpu_flags": ["avx2"],
    }  # fmt: skip
    table = format_cells_table(result)
    assert "CPU flags: avx2" in table and "28 steps" in table and "784 steps" in table
    for speed in cell_speeds:
        assert any(line.startswith(f"{speed.cell} ") for line in table.splitlines())
    # Measured with --compile off; a compiled figure is marked.
    assert not any(speed.compiled for speed in cell_speeds) and "torch.compile" not in table
    result["cells"][1]["compiled"] = True
    marked = format_cells_table(result)
    assert "torch.compile (--compile auto" in marked
    assert "*" in next(line for line in marked.splitlines()[3:] if line.startswith(
        result["cells"][1]["cell"] + " "))  # fmt: skip


@pytest.mark.parametrize(
    ("cells", "complaint"),
    [
        (["lstm,nosuch"], "unknown cell 'nosuch'"),
        ([","], "names no family"),
        (["lstm", "--steps", "5"], "--steps does not apply"),
        (["lstm", "--to-accuracy"], "--to-accuracy does not apply"),
    ],
)
def test_cells_bench_refuses_unknown_families_and_other_modes_in_one_line(cells, complaint, capsys):
    assert main(["bench", "--cells", *cells]) == 2
    error = capsys.readouterr().err.strip()
    assert complaint in error and len(error.splitlines()) == 1


@pytest.mark.slow
def test_cells_bench_cli_on_mnist_prints_one_json_object(mnist_dir, one_torch_thread, capsys):
    argv = ["bench", "--cells", "lstm,lru", "--rounds", "1", "--data-dir", str(mnist_dir),
            "--device", "cpu", "--batch-size", "8", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(s["cell"], s["view"]) for s in result["cells"]] == [
        ("lstm", "rows"),
        ("lru", "rows"),
        ("lstm", "pixels"),
        ("lru", "pixels"),
    ]
    assert result.keys() >= RUNTIME - {"python_version"}


def test_recipes_from_presets_and_files_are_compared_on_every_seed(
    stripes_dir, tmp_path, one_torch_thread
):
    """Old and new recipes in one command: each trained on each seed, the ratio of their times."""
    recipe = tmp_path / "wider.toml"
    recipe.write_text("[model]\nhidden_sizes = [12]\n[train]\nlr = 0.01\nsteps = 20\n")
    overrides = {"dataset": str(stripes_dir), "validation_size": 100, "device": "cpu"}
    result = run_benchmark(
        steps=4, to_accuracy=True, accuracy_presets=("default", str(recipe)),
        accuracy_seeds=(3, 4), accuracy_steps=None, eval_every=5, overrides=overrides,
    )  # fmt: skip
    default, wider = result["recipes"]
    assert (default["recipe"], wider["recipe"]) == ("default", str(recipe))
    assert default["seeds"] == wider["seeds"] == [3, 4]
    assert wider["steps"] == 20  # the file's own budget
    assert default["train_seconds_vs_first"] == 1.0
    assert wider["train_seconds_vs_first"] == pytest.approx(
        wider["train_seconds_mean"] / default["train_seconds_mean"]
    )
    # The first recipe's first seed is the run the baseline was compared with.
    assert default["test_accuracy"][0] == result["test_accuracy"]
    for recipe_result in (default, wider):
        accuracies = recipe_result["test_accuracy"]
        assert recipe_result["test_accuracy_min"] == min(accuracies)
        assert recipe_result["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
    # Two seeds are two different runs.
    assert wider["train_seconds"][0] != wider["train_seconds"][1]
    table = format_table(result)
    assert "recipes side by side (seeds 3,4" in table and str(recipe) in table


def test_a_recipe_that_is_no_preset_and_no_file_is_one_line(tmp_path, capsys):
    missing = tmp_path / "gone.toml"
    argv = ["bench", "--to-accuracy", "--accuracy-preset", "default",
            "--accuracy-preset", str(missing)]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert f"config file {missing} does not exist" in error and len(error.splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--to-accuracy", "--accuracy-seeds", "1,1"])
    assert exit_info.value.code == 2 and "names a seed twice" in capsys.readouterr().err
