from pathlib import Path

import torch

from seqmnist.runtime import Runtime, bf16_hardware, onednn_bf16_lstm_works, resolve_precision


def test_explicit_precisions_are_kept():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"


def test_auto_picks_bf16_on_cpu_only_with_native_bf16_and_a_working_onednn_lstm():
    cpu = torch.device("cpu")
    expected = "bf16" if bf16_hardware(cpu) and onednn_bf16_lstm_works() else "fp32"
    assert resolve_precision("auto", cpu) == expected


def test_native_bf16_means_the_cpu_flags_not_onednn_emulation():
    # oneDNN reports bf16 support on any AVX-512 CPU, where it only emulates it.
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert bf16_hardware(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)


def test_the_bf16_lstm_trial_agrees_with_running_one():
    layer = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            layer(torch.zeros(2, 3, 4))[0].float().sum().backward()
        works = True
    except RuntimeError:
        works = False
    assert onednn_bf16_lstm_works() == works


def test_threads_are_set_once_and_recorded():
    previous = torch.get_num_threads()
    try:
        runtime = Runtime.resolve("cpu", "fp32", threads=1)
        assert torch.get_num_threads() == 1
        assert runtime.to_dict()["threads"] == 1
    finally:
        torch.set_num_threads(previous)


def test_bf16_training_steps_run_on_any_cpu():
    runtime = Runtime.resolve("cpu", "bf16")
    layer = torch.nn.LSTM(4, 4, batch_first=True)
    with runtime.autocast():
        outputs, _ = layer(torch.rand(2, 3, 4))
    # Where oneDNN has no bf16 LSTM (an AMD CPU with AVX2 only, say), PyTorch's own
    # kernel runs the layer in fp32 under autocast, rather than failing.
    assert outputs.dtype == (torch.bfloat16 if onednn_bf16_lstm_works() else torch.float32)
    outputs.float().sum().backward()
