"""A sweep worker as a torchrun job: rank 0 takes each trial, both processes train it."""

import json
import signal
import subprocess
import sys

import pytest
from conftest import ENV_ONE_THREAD, finish, runs_of, trials, wait_for, worker

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
GRID = '[grid]\n"train.lr" = [0.003, 0.01]\n'


def test_a_torchrun_job_trains_each_trial_once_as_one_process_would(write_spec, tmp_path):
    spec = write_spec(GRID, seeds=(0,), steps=30)
    alone, job = tmp_path / "alone", tmp_path / "job"
    assert finish(worker(spec, alone))[0] == 0
    launch = subprocess.run(
        [*TORCHRUN, "-m", "seqmnist", "sweep", "run", str(spec), "--out", str(job)],
        capture_output=True, text=True, timeout=300, env=ENV_ONE_THREAD,
    )  # fmt: skip
    assert launch.returncode == 0, launch.stderr
    assert runs_of(trials(job)) == runs_of(trials(alone))  # every trial once
    assert launch.stdout.count("processes) ran 2 trials") == 1  # rank 0 reports
    by_lr = {t.params["train.lr"]: t for t in trials(alone)}
    for trial in trials(job):
        summary = json.loads((job / trial.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["runtime"]["world_size"] == 2
        # The same optimisation as one process, up to floating-point reduction order.
        single = by_lr[trial.params["train.lr"]]
        assert trial.user_attrs["val_loss"] == pytest.approx(
            single.user_attrs["val_loss"], abs=1e-4
        )


STOPPED_BY_RANK_0 = """
import sys
from seqmnist.api import make_config
from seqmnist.distributed import environment_ranks, leave_process_group
from seqmnist.training import StopTraining, train

config = make_config(
    "default", dataset=sys.argv[1], validation_size=100, hidden_sizes="16", steps=60,
    batch_size=32, eval_batch_size=64, device="cpu", threads=1, log_every=5,
)

def condemn(record):
    # As a sweep's pruner does: it runs on rank 0 alone.
    # At a batch record (step 10, mid-epoch) or an epoch's (step 15), as a pruner does.
    if environment_ranks().rank == 0 and record["kind"] == sys.argv[3] and record["step"] >= 10:
        raise StopTraining("rank 0 says stop")

result = train(config, sys.argv[2], progress=False, callbacks=(condemn,))
stopped = result.summary["stopped"]
print("rank", environment_ranks().rank, "stopped after", result.summary["steps"], "steps,",
      "at", stopped["step"])
leave_process_group(together=True)
"""


@pytest.mark.parametrize(("kind", "step"), [("batch", 10), ("epoch", 15)])
def test_a_stop_asked_by_one_rank_stops_every_rank_at_the_same_step(
    kind, step, stripes_dir, tmp_path
):
    script = tmp_path / "stop.py"
    script.write_text(STOPPED_BY_RANK_0)
    launch = subprocess.run(
        [*TORCHRUN, str(script), str(stripes_dir), str(tmp_path / "run"), kind],
        capture_output=True, text=True, timeout=180, env=ENV_ONE_THREAD,
    )  # fmt: skip
    assert launch.returncode == 0, launch.stderr
    assert sorted(launch.stdout.split("\n")[:2]) == [
        f"rank 0 stopped after {step} steps, at {step}",
        f"rank 1 stopped after {step} steps, at {step}",
    ]  # fmt: skip
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped"] == {"step": step, "reason": "rank 0 says stop"}


def test_when_rank_0_cannot_start_the_others_end_with_it(write_spec, tmp_path):
    """Rank 0 refuses the folder (another spec's sweep): the job ends at once, with one line."""
    out = tmp_path / "job"
    assert finish(worker(write_spec(GRID, seeds=(0,), steps=5), out))[0] == 0
    other = write_spec(GRID, seeds=(1,), steps=5)
    launch = subprocess.run(
        [*TORCHRUN, "-m", "seqmnist", "sweep", "run", str(other), "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=ENV_ONE_THREAD,
    )  # fmt: skip
    assert launch.returncode != 0
    assert launch.stderr.count("made from a different spec") == 1, launch.stderr
    # (torchrun prints its own report of the failed child; none comes from seqmnist)
    assert "src/seqmnist" not in launch.stderr and "timed out" not in launch.stderr.lower()


def test_a_trial_whose_folder_rank_0_refuses_fails_on_every_rank_and_the_job_goes_on(
    write_spec, tmp_path
):
    """A stray file in one trial's folder: that trial fails, the next is trained by both."""
    from seqmnist.sweep.worker import run_name

    spec, out = write_spec(GRID, seeds=(0,), steps=10), tmp_path / "job"
    blocked = out / "runs" / run_name({"train.lr": 0.003}, 0)
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("not a run")
    launch = subprocess.run(
        [*TORCHRUN, "-m", "seqmnist", "sweep", "run", str(spec), "--out", str(out)],
        capture_output=True, text=True, timeout=180, env=ENV_ONE_THREAD,
    )  # fmt: skip
    assert launch.returncode == 0, launch.stderr
    states = {t.params["train.lr"]: t.state.name for t in trials(out)}
    assert states == {0.003: "FAIL", 0.01: "COMPLETE"}


def test_ctrl_c_stops_the_job_at_one_checkpoint_and_the_sweep_goes_on(write_spec, tmp_path):
    spec, out = write_spec(GRID, seeds=(0,), steps=1500), tmp_path / "job"
    launch = subprocess.Popen(
        [*TORCHRUN, "-m", "seqmnist", "sweep", "run", str(spec), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV_ONE_THREAD,
    )  # fmt: skip
    wait_for(lambda: list((out / "runs").glob("*/checkpoints/step-*.json")), what="a checkpoint")
    launch.send_signal(signal.SIGINT)  # torchrun passes it to both processes
    status, _, errors = finish(launch, timeout=120)
    assert status != 0
    assert errors.count("continue the sweep with: seqmnist sweep run") == 1, errors  # rank 0's
    # The stopped trial runs again from its checkpoint; nothing is lost or run twice.
    status, _, errors = finish(worker(spec, out), timeout=400)
    assert status == 0, errors
    assert len(runs_of(trials(out))) == 2 == len(set(runs_of(trials(out))))
