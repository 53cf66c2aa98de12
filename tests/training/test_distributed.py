"""One run over two processes with torchrun (gloo on the CPU): the run one process trains.

Each test starts `torchrun --standalone --nproc-per-node 2` (a rendezvous on
a free loopback port) with one thread per process, as the issue asks.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from seqmnist.api import evaluate_run

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def options(stripes_dir, steps: int = 40, *extra: str) -> list[str]:
    return [
        "--dataset", str(stripes_dir), "--validation-size", "100", "--hidden-sizes", "16",
        "--steps", str(steps), "--batch-size", "32", "--eval-batch-size", "64",
        "--checkpoint-every", "10", "--device", "cpu", "--threads", "1", "--no-progress", *extra,
    ]  # fmt: skip


def train(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=ENV)


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_the_run_one_process_trains(stripes_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # fp32: on bf16 hardware `auto` trains in bf16, whose products of a batch of 16
    # and of 32 round differently (1.8e-4 apart after 40 steps on an AMD EPYC with
    # AVX-512 BF16), which would hide what this compares: the order of fp32 sums.
    fp32 = options(stripes_dir, 40, "--precision", "fp32")
    single = train([sys.executable, "-m", "seqmnist", "train", *fp32, "--out", str(one)])
    assert single.returncode == 0, single.stderr
    both = train([*TORCHRUN, "-m", "seqmnist", "train", *fp32, "--out", str(two)])
    assert both.returncode == 0, both.stderr
    # The same optimisation, up to the order floating-point sums were taken in.
    weights_one, weights_two = (
        load_file(one / "model.safetensors"),
        load_file(two / "model.safetensors"),
    )
    for name, tensor in weights_one.items():
        assert (tensor - weights_two[name]).abs().max().item() < 1e-5, name
    # Written once, by rank 0: the same records as one process, each once.
    assert [(r["kind"], r["step"]) for r in records(two)] == [
        (r["kind"], r["step"]) for r in records(one)
    ]
    for mine, theirs in zip(records(two), records(one)):
        for key in ("loss", "accuracy", "val_accuracy", "train_loss"):
            if key in mine:
                assert mine[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert both.stdout.count("run written to") == 1  # rank 0 alone reports
    summary = json.loads((two / "summary.json").read_text())
    assert summary["runtime"]["world_size"] == 2
    assert (
        summary["test_accuracy"] == json.loads((one / "summary.json").read_text())["test_accuracy"]
    )
    test = evaluate_run(two, "test")  # `seqmnist eval` on it gives the summary's figure
    assert (test.accuracy, test.loss) == (summary["test_accuracy"], summary["test_loss"])


def launched_to_a_checkpoint(stripes_dir, run_dir, steps: int) -> subprocess.Popen:
    """A 2-process training launch, once it has written its first checkpoint."""
    launch = subprocess.Popen(
        [*TORCHRUN, "-m", "seqmnist", "train", *options(stripes_dir, steps), "--out", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("step-*.json")):
        assert time.monotonic() < deadline and launch.poll() is None, launch.communicate()
        time.sleep(0.1)
    return launch


def test_ctrl_c_stops_both_at_one_checkpoint_and_resume_goes_on(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    launch = launched_to_a_checkpoint(stripes_dir, run_dir, 3000)
    launch.send_signal(signal.SIGINT)  # torchrun passes it to both processes
    _, errors = launch.communicate(timeout=120)
    assert launch.returncode != 0
    assert errors.count("resume with: seqmnist train --resume") == 1, errors  # rank 0's line
    assert not (run_dir / "summary.json").exists()
    stopped_at = max(
        int(p.stem.split("-")[1]) for p in (run_dir / "checkpoints").glob("step-*.json")
    )
    resumed = train(
        [*TORCHRUN, "-m", "seqmnist", "train", "--resume", str(run_dir), "--no-progress"]
    )
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3000 > stopped_at
    steps = [r["step"] for r in records(run_dir) if r["kind"] == "batch"]
    assert steps == sorted(set(steps))  # no step recorded twice


def test_a_rank_that_dies_ends_the_other_in_bounded_time(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    launch = launched_to_a_checkpoint(stripes_dir, run_dir, 100000)
    children = subprocess.run(["pgrep", "-P", str(launch.pid)], capture_output=True, text=True)
    workers = [int(pid) for pid in children.stdout.split()]
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    started = time.monotonic()
    try:
        launch.communicate(timeout=90)
    finally:
        launch.kill()
    assert launch.returncode != 0
    assert time.monotonic() - started < 90
    for pid in workers:  # neither process is left behind
        assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_a_batch_that_does_not_split_is_refused(stripes_dir, tmp_path):
    refused = train([*TORCHRUN, "-m", "seqmnist", "train",
                     *options(stripes_dir), "--batch-size", "33", "--out", str(tmp_path / "run")])  # fmt: skip
    assert refused.returncode != 0
    # One line from each process; torchrun then reports its failed children in its own words.
    assert refused.stderr.splitlines()[0].startswith("seqmnist: error: the batch of 33")
    assert "does not split evenly over 2 processes" in refused.stderr
    assert "seqmnist/training" not in refused.stderr  # no traceback through seqmnist's code


STOP_AT_STEP_20 = """
import sys
import torch
from seqmnist.api import make_config
from seqmnist.distributed import environment_ranks, leave_process_group
from seqmnist.errors import TrainingInterrupted
from seqmnist.training import StopRequests, train

config = make_config(
    "default", dataset=sys.argv[1], validation_size=100, hidden_sizes="16", steps=40,
    batch_size=32, eval_batch_size=64, checkpoint_every=10, device="cpu", threads=1,
    dropout=0.3, readout="mean", log_every=5,
)
stop = StopRequests()

def ask(record):
    if record["step"] == 5:  # where each rank's dropout draws stand
        rank = environment_ranks().rank
        torch.save(torch.get_rng_state(), f"{sys.argv[2]}-rng-{rank}.pt")
    if environment_ranks().rank == 0 and record["step"] == 20:
        stop.request()

try:
    train(config, sys.argv[2], progress=False, callbacks=(ask,), stop=stop)
except TrainingInterrupted as stopped:
    print(stopped)
finally:
    leave_process_group(together=True)
"""


def test_with_dropout_a_resumed_launch_equals_one_that_never_stopped(stripes_dir, tmp_path):
    """Each rank keeps its own dropout state in the checkpoint, so a resume goes on exactly."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    extra = ("--dropout", "0.3", "--readout", "mean", "--log-every", "5")
    uninterrupted = train([*TORCHRUN, "-m", "seqmnist", "train",
                           *options(stripes_dir, 40, *extra), "--out", str(whole)])  # fmt: skip
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    script = tmp_path / "stop.py"
    script.write_text(STOP_AT_STEP_20)
    stopped = train([*TORCHRUN, str(script), str(stripes_dir), str(parts)])
    assert stopped.returncode == 0, stopped.stderr
    assert "at step 20" in stopped.stdout and not (parts / "summary.json").exists()
    # Each process draws its own dropout masks for its own slice of the batch.
    states = [torch.load(f"{parts}-rng-{rank}.pt", weights_only=True) for rank in (0, 1)]
    assert not torch.equal(*states)
    resumed = train([*TORCHRUN, "-m", "seqmnist", "train", "--resume", str(parts), "--no-progress"])
    assert resumed.returncode == 0, resumed.stderr

    # The saved weights are the best validation's (maybe from before the stop): the
    # losses after it say whether every rank went on with its own draws.
    def losses(run_dir):
        return [(r["step"], r.get("loss"), r.get("val_loss")) for r in records(run_dir)]

    assert losses(parts) == losses(whole)
    assert [step for step, loss, _ in losses(parts) if loss is not None][-4:] == [25, 30, 35, 40]
