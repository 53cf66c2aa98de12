import torch

from seqmnist.device import onednn_bf16_lstm_works, resolve_precision


def test_explicit_precisions_are_kept():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"


def test_auto_picks_bf16_on_cpu_only_where_onednn_runs_a_bf16_lstm():
    expected = (
        "bf16"
        if torch.ops.mkldnn._is_mkldnn_bf16_supported() and onednn_bf16_lstm_works()
        else "fp32"
    )
    assert resolve_precision("auto", torch.device("cpu")) == expected


def test_the_bf16_lstm_trial_agrees_with_running_one():
    layer = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            layer(torch.zeros(2, 3, 4))[0].float().sum().backward()
        works = True
    except RuntimeError:
        works = False
    assert onednn_bf16_lstm_works() == works
