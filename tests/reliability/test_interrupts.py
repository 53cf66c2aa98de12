"""SIGINT and SIGTERM: finish the step, write a checkpoint, say how to resume, exit 130 or 143."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from support import records, signal_at, store, tiny_config, train_as_the_cli_does

import seqmnist.training.checkpoint as checkpoint_module
from seqmnist.cli import main
from seqmnist.errors import TrainingInterrupted
from seqmnist.training import train


def start_training(stripes_dir, run_dir):
    argv = [
        sys.executable, "-m", "seqmnist", "train", "--dataset", str(stripes_dir),
        "--validation-size", "100", "--hidden-sizes", "8", "--batch-size", "32",
        "--steps", "400", "--log-every", "5", "--checkpoint-every", "50", "--device", "cpu",
        "--no-progress", "--out", str(run_dir),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_training(process, run_dir, timeout=60.0):
    """Until the first record is written, so the loop and its handlers are running."""
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.jsonl"
    while not (metrics.exists() and metrics.stat().st_size > 0):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


@pytest.mark.parametrize(
    "signals, exit_code",
    [
        ((signal.SIGINT,), 130),
        ((signal.SIGTERM, signal.SIGTERM), 143),
        ((signal.SIGINT, signal.SIGTERM), 130),
    ],
    ids=["SIGINT", "SIGTERM twice", "SIGINT then SIGTERM"],
)
def test_a_signalled_training_process_saves_and_a_resume_completes(
    stripes_dir, tmp_path, signals, exit_code, capsys
):
    run_dir = tmp_path / "run"
    process = start_training(stripes_dir, run_dir)
    try:
        wait_for_training(process, run_dir)
        for number in signals:  # a second one arrives while the first is being handled
            process.send_signal(number)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert f"resume with: seqmnist train --resume {run_dir}" in last_line
    # The first signal decides both the message and the exit status.
    assert f"interrupted by {signals[0].name}" in last_line
    stopped_at = store(run_dir).latest().step  # reads back intact
    assert f"at step {stopped_at};" in last_line
    assert not (run_dir / "model.safetensors").exists()

    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 400
    steps = [record["step"] for record in records(run_dir) if record["kind"] == "batch"]
    assert steps == list(range(5, 401, 5))  # each once, none lost
    assert "resuming" in capsys.readouterr().out


def test_a_second_signal_during_the_save_changes_nothing(stripes_dir, tmp_path, monkeypatch):
    written = []
    write = checkpoint_module.atomic_write_bytes

    def write_then_signal(path, data):
        write(path, data)
        written.append(path.name)
        if path.name == "step-00000006.safetensors":  # between the two files of the save
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(checkpoint_module, "atomic_write_bytes", write_then_signal)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 6;") as stopped:
        train_as_the_cli_does(tiny_config(stripes_dir, steps=20), tmp_path / "run",
                              progress=False, callbacks=(signal_at(6),))  # fmt: skip
    assert stopped.value.exit_code == 130
    assert written[-2:] == ["step-00000006.safetensors", "step-00000006.json"]
    assert store(tmp_path / "run").latest().step == 6
    # Outside training the signals do what they did before.
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_the_library_leaves_the_signals_to_their_owner(stripes_dir, tmp_path):
    """train() installs no handlers: without a StopRequests, Ctrl-C is Python's own."""
    seen = []

    def look(record: dict) -> None:
        seen.append((signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)))

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    train(tiny_config(stripes_dir, steps=6), tmp_path / "run", progress=False, callbacks=(look,))
    assert seen and set(seen) == {before}
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(stripes_dir, steps=20), tmp_path / "again", progress=False,
              callbacks=(signal_at(6),))  # fmt: skip


def test_a_stop_asked_from_another_thread_ends_a_run_that_has_no_folder(stripes_dir):
    """Two runs can share a process: one is stopped by request, with no signal at all."""
    import threading

    from seqmnist.training import StopRequests

    stop = StopRequests()
    asked = []

    def ask(record: dict) -> None:
        if record["step"] == 6 and not asked:
            asker = threading.Thread(target=stop.request)
            asker.start()
            asker.join()
            asked.append(True)

    with pytest.raises(TrainingInterrupted, match="SIGINT at step 6; the run had no folder"):
        train(tiny_config(stripes_dir, steps=20), None, progress=False, callbacks=(ask,),
              stop=stop)  # fmt: skip
