"""The figures a run reports are the figures `seqmnist eval` gives for its weights, exactly."""

import pytest
import torch

from seqmnist.api import evaluate_run, make_config, train
from seqmnist.runtime import Runtime, bf16_hardware, cpu_flags


def tiny_config(stripes_dir, **overrides):
    fields = dict(
        dataset=str(stripes_dir), validation_size=100, hidden_sizes="16", batch_size=32,
        steps=30, log_every=10, lr=0.01, eval_batch_size=64, device="cpu",
    )  # fmt: skip
    fields.update(overrides)
    return make_config("default", **fields)


def assert_summary_is_what_eval_gives(run_dir, summary):
    test = evaluate_run(run_dir, "test")
    validation = evaluate_run(run_dir, "val")
    # Exact equality: one evaluation path, in fp32, on the same weights and data.
    assert (test.accuracy, test.loss) == (summary["test_accuracy"], summary["test_loss"])
    assert (validation.accuracy, validation.loss) == (summary["val_accuracy"], summary["val_loss"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_summary_and_eval_agree_exactly_whatever_the_training_precision(
    stripes_dir, tmp_path, precision, one_torch_thread
):
    # bf16 runs natively where the CPU has it and emulated elsewhere; either way the
    # training steps are bf16 and the reported figures must not inherit it.
    result = train(tiny_config(stripes_dir, precision=precision), tmp_path / "run", progress=False)
    runtime = result.summary["runtime"]
    assert runtime["precision"] == precision
    assert runtime["evaluation_precision"] == "fp32"
    assert runtime["threads"] == torch.get_num_threads()
    assert_summary_is_what_eval_gives(tmp_path / "run", result.summary)


def test_auto_trains_in_bf16_on_bf16_hardware_and_still_agrees_with_eval(
    stripes_dir, tmp_path, one_torch_thread
):
    cpu = torch.device("cpu")
    if not bf16_hardware(cpu):
        pytest.skip(
            f"this CPU has no bf16 hardware (flags: {', '.join(cpu_flags()) or 'none'}), so "
            "precision auto trains in fp32 here; the emulated bf16 case runs above"
        )
    expected = Runtime.resolve("cpu", "auto").precision
    result = train(tiny_config(stripes_dir, precision="auto"), tmp_path / "run", progress=False)
    assert result.summary["runtime"]["precision"] == expected
    assert_summary_is_what_eval_gives(tmp_path / "run", result.summary)


def test_the_runtime_is_decided_once_and_recorded(stripes_dir, tmp_path, one_torch_thread):
    runtime = Runtime.resolve("cpu", "fp32", threads=1)
    result = train(tiny_config(stripes_dir), tmp_path / "run", progress=False, runtime=runtime)
    recorded = result.summary["runtime"]
    assert recorded["device"] == "cpu" and recorded["precision"] == "fp32"
    assert recorded["threads"] == 1
    assert recorded["bf16_hardware"] == bf16_hardware(torch.device("cpu"))
