"""A NaN or infinite loss stops training, names the step, and never reaches a checkpoint."""

import math

import pytest
import torch
from safetensors.torch import load_file
from support import sha256, store, tiny_config

from seqmnist.cli import main
from seqmnist.errors import TrainingDiverged
from seqmnist.training import train
from seqmnist.training.checkpoint import CheckpointStore
from seqmnist.training.loop import TrainingLoop


def poison(monkeypatch, at_step, loss=None, weights=False):
    """Make step ``at_step`` (1-based) return ``loss`` and/or leave a NaN in the weights."""
    original = TrainingLoop._train_step

    def step(self, indices):
        result = original(self, indices)
        if self.step + 1 != at_step:
            return result
        if weights:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = math.nan
        return (torch.tensor(loss), result[1]) if loss is not None else result

    monkeypatch.setattr(TrainingLoop, "_train_step", step)


def all_finite(path):
    return all(t.isfinite().all() for t in load_file(path).values() if t.is_floating_point())


@pytest.mark.parametrize(
    "poisoned, stop_step, complaint",
    [
        ({"loss": math.nan}, 10, "the loss at step 10"),
        ({"loss": math.inf}, 3, "the loss at step 3"),
        # A finite loss but NaN weights on a checkpoint step: that checkpoint is refused.
        ({"weights": True}, 8, "the weights by step 8"),
    ],
    ids=["nan loss", "inf loss", "nan weights"],
)
def test_divergence_stops_before_any_checkpoint_holds_nan(
    stripes_dir, tmp_path, monkeypatch, poisoned, stop_step, complaint
):
    saved = {}  # step -> hashes of its two files as written
    save = CheckpointStore.save

    def recording_save(self, step, state):
        path = save(self, step, state)
        saved[step] = (sha256(path), sha256(path.with_suffix(".safetensors")))
        return path

    monkeypatch.setattr(CheckpointStore, "save", recording_save)
    poison(monkeypatch, stop_step, **poisoned)
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as diverged:
        train(tiny_config(stripes_dir, steps=20), run_dir, progress=False)
    message = str(diverged.value)
    assert complaint in message and "--lr" in message and "--grad-clip" in message
    assert "\n" not in message
    assert not (run_dir / "model.safetensors").exists()
    assert all(step < stop_step for step in saved)

    checkpoints = sorted((run_dir / "checkpoints").glob("*.safetensors"))
    assert all(all_finite(path) for path in checkpoints)
    if not saved:  # diverged before the first checkpoint
        assert not checkpoints and "last good checkpoint" not in message
        return
    latest = store(run_dir).latest()
    assert latest.step == max(saved)
    assert (sha256(latest.path), sha256(latest.path.with_suffix(".safetensors"))) == saved[
        latest.step
    ]
    assert f"the last good checkpoint, {latest.path}, is kept as it was" in message


def test_the_cli_reports_divergence_in_one_line(stripes_dir, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, 5, loss=math.nan)
    argv = ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--steps", "20",
            "--hidden-sizes", "8", "--checkpoint-every", "4", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("seqmnist: error: training stopped: the loss at step 5 became NaN")
    assert "step-00000004.json, is kept as it was" in error
    assert store(tmp_path / "run").latest().step == 4
