"""A smoke test of `seqmnist bench`: a few steps, every reported field present and sane.

Speed itself is measured by the benchmark, never asserted here.
"""

import json

import pytest

from seqmnist.cli import main

REQUIRED = {
    "train_samples_per_second", "baseline_train_samples_per_second", "train_speedup",
    "infer_samples_per_second", "latency_p50_ms", "latency_p99_ms", "device",
}  # fmt: skip


@pytest.mark.slow
def test_bench_runs_a_few_steps_and_reports_every_field(mnist_dir, capsys):
    argv = ["bench", "--steps", "12", "--data-dir", str(mnist_dir), "--device", "cpu",
            "--to-accuracy", "--accuracy-steps", "20", "--eval-every", "10", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert REQUIRED | {"seconds_to_98_5", "seconds_to_99_0", "test_accuracy"} <= result.keys()
    assert result["train_samples_per_second"] > 0
    assert result["baseline_train_samples_per_second"] > 0
    assert result["train_speedup"] == pytest.approx(
        result["train_samples_per_second"] / result["baseline_train_samples_per_second"]
    )
    assert result["latency_p50_ms"] <= result["latency_p99_ms"]
    assert 0.0 <= result["test_accuracy"] <= 1.0
