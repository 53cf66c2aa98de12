"""Small sweeps over the stripes dataset: runs of a second or so each."""

import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

TINY = """
base = "default"
seeds = {seeds}
{extra}
[fixed]
"data.dataset" = "{data}"
"data.validation_size" = 100
{hidden}
"train.steps" = {steps}
"train.batch_size" = 32
"train.eval_batch_size" = 64
"train.checkpoint_every" = 10
"train.threads" = 1
{tables}
"""
GRID = '[grid]\n"model.cell" = ["lstm", "gru"]\n"train.lr" = [0.003, 0.01]\n'


@pytest.fixture
def write_spec(stripes_dir, tmp_path):
    def write(tables: str = GRID, seeds=(0, 1), steps: int = 40, extra: str = "",
              hidden: str = '"model.hidden_sizes" = [16]') -> Path:  # fmt: skip
        path = tmp_path / "spec.toml"
        path.write_text(TINY.format(seeds=list(seeds), extra=extra, data=stripes_dir,
                                    steps=steps, tables=tables, hidden=hidden))  # fmt: skip
        return path

    return write


ENV_ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def worker(spec: Path, out: Path, *options: str) -> subprocess.Popen:
    """`seqmnist sweep run` as its own process, one torch thread (two share 2 cores)."""
    return subprocess.Popen(
        [sys.executable, "-m", "seqmnist", "sweep", "run", str(spec), "--out", str(out), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV_ONE_THREAD,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, out, err


def trials(out: Path, storage: str | None = None) -> list[optuna.trial.FrozenTrial]:
    url = storage or f"sqlite:///{out / 'sweep.db'}"
    return optuna.load_study(study_name="seqmnist-sweep", storage=url).get_trials()


def runs_of(found) -> list[tuple[str, int]]:
    """(configuration, seed) of every finished trial: each must appear once."""
    return sorted(
        (str(sorted(t.params.items())), t.user_attrs["seed"])
        for t in found if t.state == optuna.trial.TrialState.COMPLETE
    )  # fmt: skip


def wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
