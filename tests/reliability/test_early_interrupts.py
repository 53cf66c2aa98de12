"""Ctrl-C before training begins (importing, loading data, starting a resume): one line, exit 130."""

import os
import signal
import subprocess
import sys
import time

import pytest
from support import tiny_config

from seqmnist.cli.startup import Terminated
from seqmnist.runs import write_config


def interrupted(argv, delay):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "seqmnist", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for_seqmnist_to_start(process)
        time.sleep(delay)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr


def wait_for_seqmnist_to_start(process, timeout=30.0):
    """Until seqmnist's own code runs: its entry point sets a SIGTERM handler first thing.

    Read from the kernel's view of the process (SigCgt in /proc/PID/status).
    Before that moment the interpreter itself is starting, and a signal has its
    default effect, which no program can change.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status = open(f"/proc/{process.pid}/status").read()  # noqa: SIM115
        except OSError:
            return
        caught = int(status.split("SigCgt:")[1].split()[0], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)


def assert_one_line_and_a_next_step(returncode, stderr, next_step):
    assert returncode == 130, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    # Later than setup, training itself was stopped: it says so, then gives the next step.
    assert len(lines) == 1 or "SIGINT received" in stderr, stderr
    assert next_step in lines[-1]


# Counted from the start of seqmnist's own code: 0 lands while the command line is
# imported, 0.3 s while torch is (about 1.5 s here), 1.5-2.5 s in the data or the
# resume's setup on most machines. Each must end the same way.
@pytest.mark.parametrize("delay", [0.0, 0.3, 1.5, 2.5])
def test_ctrl_c_while_starting_a_resume_names_the_resume_command(stripes_dir, tmp_path, delay):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(
        run_dir, tiny_config(stripes_dir, steps=100_000, checkpoint_every=0, log_every=10_000)
    )
    returncode, stderr = interrupted(["train", "--resume", str(run_dir), "--no-progress"], delay)
    assert_one_line_and_a_next_step(returncode, stderr, f"seqmnist train --resume {run_dir}")


def test_ctrl_c_while_importing_a_new_run_leaves_nothing_and_says_so(stripes_dir, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--out", str(out)]
    returncode, stderr = interrupted(argv, 0.3)
    assert_one_line_and_a_next_step(returncode, stderr, "run the same command again")
    assert not out.exists()


@pytest.mark.parametrize("command", [["eval", "RUN"], ["presets", "default"]])
def test_ctrl_c_in_any_command_is_one_line(tmp_path, command):
    argv = [str(tmp_path) if part == "RUN" else part for part in command]
    returncode, stderr = interrupted(argv, 0.05)
    if returncode in (0, 2):  # it finished (or failed) before the signal came
        return
    assert_one_line_and_a_next_step(returncode, stderr, "run the same command again")


def test_sigterm_while_starting_is_one_line_and_exit_143(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, tiny_config(stripes_dir, steps=100_000, log_every=10_000))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "seqmnist", "train", "--resume", str(run_dir), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        wait_for_seqmnist_to_start(process)
        time.sleep(0.3)  # while torch is imported
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqmnist: terminated (SIGTERM)"), lines
    assert f"seqmnist train --resume {run_dir}" in lines[0]


def _set_name_interrupted(stop: BaseException) -> RuntimeError:
    """What Python 3.11 raises when ``stop`` lands in a class's __set_name__ (a dataclass field)."""

    class Field:
        def __set_name__(self, owner, name):
            raise stop

    try:
        type("Config", (), {"field": Field()})
    except RuntimeError as error:  # 3.11 wraps it
        return error
    except BaseException as error:  # 3.12 and later pass it through
        wrapped = RuntimeError("Error calling __set_name__")
        wrapped.__cause__ = error
        return wrapped
    raise AssertionError("__set_name__ did not raise")


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), Terminated()])
def test_a_stop_inside_a_dataclass_definition_is_still_a_stop(stop, monkeypatch, capsys):
    from seqmnist import cli

    def handler(args):
        raise _set_name_interrupted(stop)

    parser = cli.build_parser()
    args = parser.parse_args(["presets"])
    args.handler, args.preload = handler, ()
    monkeypatch.setattr(
        cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})()
    )
    status = cli.main(["presets"])
    expected = 143 if isinstance(stop, Terminated) else 130
    assert status == expected
    assert capsys.readouterr().err.count("\n") == 1


def test_ctrl_c_inside_a_dataclass_definition_while_starting_is_recognised():
    from seqmnist.__main__ import _stop_behind

    error = _set_name_interrupted(KeyboardInterrupt())
    assert isinstance(_stop_behind(error), KeyboardInterrupt)
    assert _stop_behind(RuntimeError("a bug")) is None
