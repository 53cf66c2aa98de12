"""--tensorboard: the same records as metrics.jsonl, as TensorBoard scalars in RUN/tensorboard."""

import json

import pytest

from seqmnist.api import make_config, train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def test_tensorboard_gets_every_record(stripes_dir, tmp_path):
    config = make_config(
        "default", dataset=str(stripes_dir), validation_size=100, hidden_sizes="8",
        batch_size=32, steps=30, log_every=10, device="cpu", tensorboard=True,
    )  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    events = event_accumulator.EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"batch/loss", "batch/accuracy", "batch/lr", "epoch/val_accuracy"} <= tags
    assert [event.step for event in events.Scalars("batch/loss")] == [10, 20, 30]
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    last_epoch = [record for record in records if record["kind"] == "epoch"][-1]
    assert events.Scalars("epoch/val_accuracy")[-1].value == pytest.approx(
        last_epoch["val_accuracy"]
    )


def test_without_the_option_nothing_is_written(stripes_dir, tmp_path):
    config = make_config("default", dataset=str(stripes_dir), validation_size=100,
                         hidden_sizes="8", steps=5, device="cpu")  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists()
