"""A resumed run equals the run that never stopped: same final weights, same records."""

import json
import signal

import pytest
from support import (
    STEPS_PER_EPOCH,
    records,
    sha256,
    signal_at,
    store,
    tiny_config,
    train_as_the_cli_does,
)

from seqmnist.cli import main
from seqmnist.errors import RunError, TrainingInterrupted
from seqmnist.runs import write_config
from seqmnist.training import train


class Crash(Exception):
    """Stands for the process dying: no interrupt checkpoint is written."""


def crash_at(step):
    def callback(record):
        if record["step"] == step:
            raise Crash

    return callback


# (how the first run stops, the step it stops at, the checkpoint the resume starts from)
STOPS = {
    "signal at an epoch end": (signal_at(STEPS_PER_EPOCH), STEPS_PER_EPOCH),
    "signal mid-epoch": (signal_at(22), 22),
    # Checkpoints every 4 steps: the crash at 26 loses steps 25-26, and their records.
    "crash mid-epoch": (crash_at(26), 24),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_resumed_run_equals_the_uninterrupted_run(stripes_dir, tmp_path, stop):
    callback, resume_step = STOPS[stop]
    config = tiny_config(stripes_dir)
    whole = train(config, tmp_path / "whole", progress=False)

    with pytest.raises((TrainingInterrupted, Crash)):
        train_as_the_cli_does(config, tmp_path / "parts", progress=False, callbacks=(callback,))
    assert store(tmp_path / "parts").latest().step == resume_step
    resumed = train(config, tmp_path / "parts", progress=False, resume=True)

    assert sha256(tmp_path / "parts/model.safetensors") == sha256(
        tmp_path / "whole/model.safetensors"
    )
    assert records(tmp_path / "parts") == records(tmp_path / "whole")
    for key in ("test_accuracy", "test_loss", "val_accuracy", "best_step", "steps"):
        assert resumed.summary[key] == whole.summary[key]


def test_resume_of_a_finished_run_rewrites_the_same_result(stripes_dir, tmp_path):
    config = tiny_config(stripes_dir, steps=8)
    train(config, tmp_path / "run", progress=False)
    weights = sha256(tmp_path / "run/model.safetensors")
    (tmp_path / "run/model.safetensors").unlink()  # as if it died while writing the result
    train(config, tmp_path / "run", progress=False, resume=True)
    assert sha256(tmp_path / "run/model.safetensors") == weights


def test_the_cli_resumes_and_only_lets_the_data_folder_change(stripes_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train_as_the_cli_does(tiny_config(stripes_dir, steps=20), run_dir, progress=False,
                              callbacks=(signal_at(6, signal.SIGTERM),))  # fmt: skip

    assert main(["train", "--resume", str(run_dir), "--lr", "0.5", "--epochs", "3"]) == 2
    error = capsys.readouterr().err
    assert "--lr, --epochs cannot be given with it" in error and len(error.splitlines()) == 1

    argv = ["train", "--resume", str(run_dir), "--data-dir", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert "resuming" in capsys.readouterr().out
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20
    assert json.loads((run_dir / "config.json").read_text())["train"]["lr"] == 0.01


def test_resume_needs_a_run_and_starts_one_stopped_before_its_first_checkpoint(
    stripes_dir, tmp_path
):
    config = tiny_config(stripes_dir, steps=3, checkpoint_every=0)
    with pytest.raises(RunError, match="empty does not exist"):
        train(config, tmp_path / "empty", progress=False, resume=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no run to resume"):
        train(config, tmp_path / "empty", progress=False, resume=True)
    # A run interrupted while loading its data has its config.json and nothing else.
    write_config(tmp_path / "empty", config)
    resumed = train(config, tmp_path / "empty", progress=False, resume=True)
    train(config, tmp_path / "whole", progress=False)
    assert resumed.summary["steps"] == 3
    assert (tmp_path / "empty" / "model.safetensors").read_bytes() == (
        tmp_path / "whole" / "model.safetensors"
    ).read_bytes()


def test_the_newest_two_checkpoints_are_kept_and_a_new_run_clears_old_ones(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=20), run_dir, progress=False)
    names = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    # Every 4 steps and at the epoch end (15) and the budget's end (20): 16 and 20 remain.
    assert names == [
        f"step-{step:08d}.{ext}" for step in (16, 20) for ext in ("json", "safetensors")
    ]

    train(tiny_config(stripes_dir, steps=3), run_dir, progress=False, overwrite=True)
    assert [path.name for path in store(run_dir).paths()] == ["step-00000003.json"]


def test_a_bf16_run_resumes_exactly_too(stripes_dir, tmp_path):
    # Each process probes oneDNN's bf16 LSTM once, at its first bf16 step; clearing the
    # cache makes each train() here do so, as a fresh process would. The probe must not
    # move the random state that dropout draws from.
    from seqmnist.runtime import onednn_bf16_lstm_works

    config = tiny_config(stripes_dir, precision="bf16")
    onednn_bf16_lstm_works.cache_clear()
    whole = train(config, tmp_path / "whole", progress=False)
    onednn_bf16_lstm_works.cache_clear()
    with pytest.raises(Crash):
        train(config, tmp_path / "parts", progress=False, callbacks=(crash_at(26),))
    onednn_bf16_lstm_works.cache_clear()
    resumed = train(config, tmp_path / "parts", progress=False, resume=True)
    assert records(tmp_path / "parts") == records(tmp_path / "whole")
    assert sha256(tmp_path / "parts/model.safetensors") == sha256(
        tmp_path / "whole/model.safetensors"
    )
    assert resumed.summary["test_loss"] == whole.summary["test_loss"]


def test_a_step_schedule_resumes_exactly_across_its_milestone(stripes_dir, tmp_path):
    # The milestone (step 30 of 40) falls after the checkpoint the resume starts from (24).
    config = tiny_config(stripes_dir, schedule="step", decay_at=0.75, decay_factor=0.1)
    whole = train(config, tmp_path / "whole", progress=False)
    with pytest.raises(Crash):
        train(config, tmp_path / "parts", progress=False, callbacks=(crash_at(26),))
    resumed = train(config, tmp_path / "parts", progress=False, resume=True)
    assert sha256(tmp_path / "parts/model.safetensors") == sha256(
        tmp_path / "whole/model.safetensors"
    )
    rates = {
        record["step"]: record["lr"] for record in records(tmp_path / "whole") if "lr" in record
    }
    assert rates[28] == pytest.approx(0.01) and rates[32] == pytest.approx(0.001)
    assert resumed.summary["test_accuracy"] == whole.summary["test_accuracy"]
