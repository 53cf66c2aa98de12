"""torch.compile for training steps: when ``auto`` chooses it, that it computes what the
eager step does, that a run resumes exactly through it, and the eager fallback."""

import dataclasses
import functools
import json
import logging

import pytest
import torch
from native_kernels import needs_compiler

from seqmnist.api import make_config
from seqmnist.config import TrainConfig
from seqmnist.data import load_dataset
from seqmnist.distributed import Ranks
from seqmnist.errors import RunError
from seqmnist.model.registry import FAMILIES
from seqmnist.presets import get_preset
from seqmnist.runs import ModelInfo, build_model, read_config, write_config
from seqmnist.runtime import Runtime
from seqmnist.training import train
from seqmnist.training.compilation import AUTO_SAMPLE_STEPS, Forward, choose
from seqmnist.training.optim import build_optimizer
from seqmnist.training.step import TrainStep

CPU = Runtime(torch.device("cpu"), "fp32", 1)
BF16 = dataclasses.replace(CPU, precision="bf16")
# The families with fused work left outside the native kernels, among them every one
# that --compile auto compiles.
COMPILED_FAMILIES = ["lru", "mingru", "minlstm", "indrnn"]


def steps_of(preset: str) -> int:
    return get_preset(preset).train.total_steps(55_000)


def test_auto_compiles_long_bf16_runs_of_the_families_where_it_pays_and_nothing_else():
    assert {n for n, f in FAMILIES.items() if f.compile_pays} <= set(COMPILED_FAMILIES)
    pixel_lru, row_lru = get_preset("pixel-lru"), get_preset("row-lru")
    assert choose(pixel_lru, BF16, steps_of("pixel-lru"), 784).compiled
    # In fp32 a long compiled run was no faster.
    assert not choose(pixel_lru, CPU, steps_of("pixel-lru"), 784).compiled
    short = choose(row_lru, BF16, steps_of("row-lru"), 28)
    assert not short.compiled and "would not repay" in short.reason
    # The threshold itself, in sample-steps.
    at = AUTO_SAMPLE_STEPS // (pixel_lru.train.batch_size * 784) + 1
    assert choose(pixel_lru, BF16, at, 784).compiled
    assert not choose(pixel_lru, BF16, at - 2, 784).compiled
    # A family whose compiled step is no faster, however long its run.
    assert not choose(get_preset("pixel-cornn"), BF16, 10**7, 784).compiled
    # Measured on CPUs only, and never under torchrun unless asked for.
    gpu = dataclasses.replace(BF16, device=torch.device("cuda"))
    assert not choose(pixel_lru, gpu, steps_of("pixel-lru"), 784).compiled
    launched = dataclasses.replace(BF16, ranks=Ranks(rank=0, local_rank=0, world_size=2))
    assert not choose(pixel_lru, launched, steps_of("pixel-lru"), 784).compiled
    # What the user says goes, either way.
    asked = {value: dataclasses.replace(row_lru, train=dataclasses.replace(
        row_lru.train, compile=value)) for value in ("on", "off")}  # fmt: skip
    assert choose(asked["on"], gpu, 1, 28).compiled
    assert not choose(asked["off"], BF16, 10**7, 784).compiled


def test_a_run_from_before_the_option_resumes_eagerly(tmp_path):
    write_config(tmp_path, get_preset("pixel-lru"))
    values = json.loads((tmp_path / "config.json").read_text())
    assert values["train"]["compile"] == "auto"
    del values["train"]["compile"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert read_config(tmp_path).train.compile == "off"


def twin_steps(stripes_dir, cell, compiled, dropout=0.0):
    """Two steps on the same initial weights and optimizer settings: (eager, other)."""
    splits = load_dataset(str(stripes_dir), validation_size=100)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    config = TrainConfig(batch_size=32, lr=0.01)
    model_config = make_config("default", cell=cell, hidden_sizes="16", dropout=dropout).model
    steps = []
    for compile_it in (False, compiled):
        torch.manual_seed(0)
        model = build_model(model_config, info)
        optimizer = build_optimizer(model, config, CPU.device)
        steps.append((model, TrainStep(model, optimizer, None, config, CPU, compiled=compile_it)))
    images = torch.from_numpy(splits.train_images[:32])
    labels = torch.from_numpy(splits.train_labels[:32]).long()
    return steps, images, labels


@needs_compiler
@pytest.mark.parametrize("cell", COMPILED_FAMILIES)
def test_a_compiled_step_computes_what_the_eager_step_does(stripes_dir, cell):
    [(eager_model, eager), (compiled_model, compiled)], images, labels = twin_steps(
        stripes_dir, cell, compiled=True
    )
    assert compiled.forward.is_compiled
    for _ in range(3):
        eager_loss, eager_correct = eager(images, labels)
        compiled_loss, compiled_correct = compiled(images, labels)
        # Inductor reorders sums and fuses, so fp32 rounding differs; nothing else.
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
        assert compiled_correct == eager_correct
    assert compiled.forward.is_compiled and not compiled.forward.failure
    for (name, ours), theirs in zip(
        compiled_model.state_dict().items(), eager_model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5, msg=name)


def compiled_run_config(stripes_dir, cell):
    """A 12-step run with --compile on, dropout, and checkpoints every 4 steps."""
    return make_config(
        "default", dataset=str(stripes_dir), validation_size=100, cell=cell,
        hidden_sizes="8", batch_size=32, steps=12, log_every=2, eval_batch_size=64,
        device="cpu", precision="fp32", dropout=0.2, checkpoint_every=4, compile="on",
    )  # fmt: skip


class Crash(Exception):
    """Stands for the process dying: no interrupt checkpoint is written."""


def crash_at_step_10(config, run_dir):
    """Train ``config`` into ``run_dir`` until the process dies at step 10 (checkpoint 8)."""

    def crash(record):
        if record["step"] == 10:
            raise Crash

    with pytest.raises(Crash):
        train(config, run_dir, progress=False, callbacks=(crash,))


def fails_when_run(graph, example_inputs):
    """A backend whose compiled code draws from the generator, then fails: the retry must
    not see the draw (dynamo restores the random state around compiling, not running)."""

    def run(*args):
        torch.rand(1)
        raise RuntimeError("no C++ compiler here")

    return run


def test_a_step_that_cannot_compile_warns_once_and_trains_eagerly_from_the_same_state(
    stripes_dir, caplog
):
    # Dropout on: the failed attempt's draws are given back, so the eager retry
    # takes the same masks as a run that never tried.
    [(_, eager), (_, fallback)], images, labels = twin_steps(
        stripes_dir, "mingru", compiled=False, dropout=0.3
    )
    fallback.forward = Forward(fallback.model, compiled=True, backend=fails_when_run)
    with caplog.at_level(logging.WARNING, logger="seqmnist.train"):
        for _ in range(3):
            torch.manual_seed(7)
            expected = eager(images, labels)
            torch.manual_seed(7)
            assert [t.item() for t in fallback(images, labels)] == [t.item() for t in expected]
    warnings = [r.getMessage() for r in caplog.records if "torch.compile" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler here" in warnings[0]
    assert not fallback.forward.is_compiled
    assert "no C++ compiler here" in fallback.forward.failure
    # One optimizer step per call, the failed attempt's included.
    assert fallback.optimizer.state_dict()["state"][0]["step"] == 3


def test_under_torchrun_a_failed_compile_is_one_error_not_a_retry(stripes_dir):
    [(_, _), (_, step)], images, labels = twin_steps(stripes_dir, "mingru", compiled=False)
    step.forward = Forward(step.model, True, backend=fails_when_run, fall_back=False)
    with pytest.raises(RunError, match=r"torch.compile failed .*no C\+\+ compiler.*--compile off"):
        step(images, labels)


def test_a_run_whose_compile_failed_resumes_eagerly_with_the_same_result(
    stripes_dir, tmp_path, monkeypatch
):
    config = compiled_run_config(stripes_dir, "mingru")
    failing = functools.partialmethod(Forward.__init__, backend=fails_when_run)
    monkeypatch.setattr(Forward, "__init__", failing)
    whole = train(config, tmp_path / "whole", progress=False)
    assert not whole.summary["compile"]["compiled"]
    reason = whole.summary["compile"]["reason"]
    assert "compiling failed (RuntimeError: no C++ compiler here)" in reason

    crash_at_step_10(config, tmp_path / "parts")
    # Compiling would succeed now; the resumed run still goes on as the run it continues.
    monkeypatch.undo()
    resumed = train(config, tmp_path / "parts", progress=False, resume=True)
    assert resumed.summary["compile"] == whole.summary["compile"]
    assert resumed.summary["test_loss"] == whole.summary["test_loss"]


@needs_compiler
def test_a_compiled_run_resumes_exactly_and_says_it_was_compiled(stripes_dir, tmp_path):
    config = compiled_run_config(stripes_dir, "lru")
    whole = train(config, tmp_path / "whole", progress=False)
    assert whole.summary["compile"] == {"compiled": True, "reason": "--compile on"}

    crash_at_step_10(config, tmp_path / "parts")
    resumed = train(config, tmp_path / "parts", progress=False, resume=True)
    assert resumed.summary["test_loss"] == whole.summary["test_loss"]
    whole_state, resumed_state = whole.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(whole_state[name], resumed_state[name]) for name in whole_state)
