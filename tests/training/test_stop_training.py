"""A callback can end training cleanly: StopTraining, as a sweep's pruner raises it."""

import json

from test_reported_figures import assert_summary_is_what_eval_gives, tiny_config

from seqmnist.training import StopTraining
from seqmnist.training import train as train_config


def stop_after(step: int):
    def callback(record):
        if record["kind"] == "batch" and record["step"] >= step:
            raise StopTraining(f"condemned at step {record['step']}")

    return callback


def test_a_callback_stops_training_and_the_run_is_finished(stripes_dir, tmp_path, one_torch_thread):
    config = tiny_config(stripes_dir, steps=200, log_every=10)
    run_dir = tmp_path / "run"
    result = train_config(config, run_dir, progress=False, callbacks=(stop_after(30),))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 30 < 200
    assert summary["stopped"] == {"step": 30, "reason": "condemned at step 30"}
    # Validated where it stopped (an epoch end's record), and an ordinary finished run.
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "epoch"][-1] == 30
    assert result.summary["stopped"]["step"] == 30
    assert_summary_is_what_eval_gives(run_dir, summary)


def test_a_run_no_callback_stops_says_nothing_of_stopping(stripes_dir, one_torch_thread):
    result = train_config(tiny_config(stripes_dir, steps=20), progress=False)
    assert "stopped" not in result.summary and result.summary["steps"] == 20


def test_a_run_leaves_the_callers_random_state_as_it_was(stripes_dir, one_torch_thread):
    import torch

    torch.manual_seed(1234)
    before = torch.get_rng_state()
    first = train_config(tiny_config(stripes_dir, steps=10, dropout=0.2), progress=False)
    assert torch.equal(torch.get_rng_state(), before)  # the library seeded nothing for us
    second = train_config(tiny_config(stripes_dir, steps=10, dropout=0.2), progress=False)
    for name, tensor in first.model.state_dict().items():  # two runs in one process: the same
        assert torch.equal(tensor, second.model.state_dict()[name]), name
