import json

import pytest
import torch
from safetensors.torch import load_file

from seqmnist.api import evaluate_run, make_config, train
from seqmnist.runs import load_run

SUMMARY_KEYS = {
    "test_accuracy", "test_loss", "val_accuracy", "val_loss",
    "params", "train_seconds", "samples_per_second",
}  # fmt: skip


def tiny_config(stripes_dir, **overrides):
    fields = dict(
        dataset=str(stripes_dir), validation_size=100, hidden_sizes="16", batch_size=32,
        steps=40, log_every=10, lr=0.01, eval_batch_size=64, device="cpu", precision="fp32",
    )  # fmt: skip
    fields.update(overrides)
    return make_config("default", **fields)


def test_a_short_run_learns_and_writes_a_complete_run_directory(stripes_dir, tmp_path):
    result = train(tiny_config(stripes_dir), tmp_path / "run", progress=False)
    run_dir = tmp_path / "run"
    assert result.test.accuracy > 0.9  # chance is 1/3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["test_accuracy"] == result.test.accuracy
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["hidden_sizes"] == [16]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    batches = [record for record in records if record["kind"] == "batch"]
    epochs = [record for record in records if record["kind"] == "epoch"]
    assert [record["step"] for record in batches] == [10, 20, 30, 40]
    assert epochs and {"train_loss", "val_loss", "val_accuracy"} <= epochs[0].keys()
    assert len(load_file(run_dir / "model.safetensors")) > 0


def test_eval_reproduces_the_summary_exactly(stripes_dir, tmp_path):
    result = train(tiny_config(stripes_dir), tmp_path / "run", progress=False)
    evaluation = evaluate_run(tmp_path / "run")
    assert evaluation.accuracy == result.summary["test_accuracy"]
    assert evaluation.loss == pytest.approx(result.summary["test_loss"], rel=1e-6)
    assert evaluation.n == 150
    assert len(evaluation.confusion) == 3
    assert sum(map(sum, evaluation.confusion)) == 150
    assert evaluate_run(tmp_path / "run", split="val").n == 100


def test_the_kept_weights_are_the_best_validation_ones(stripes_dir, tmp_path):
    result = train(tiny_config(stripes_dir, steps=60), tmp_path / "run", progress=False)
    records = [
        json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    ]
    best = max(record["val_accuracy"] for record in records if record["kind"] == "epoch")
    assert result.validation.accuracy == best
    assert evaluate_run(tmp_path / "run", split="val").accuracy == best


@pytest.mark.parametrize("budget", [{"steps": 7}, {"samples": 200}, {"epochs": 0.5}])
def test_budgets_in_steps_samples_and_epochs(stripes_dir, budget):
    result = train(tiny_config(stripes_dir, **{"steps": None, **budget}), progress=False)
    expected = {"steps": 7, "samples": 7, "epochs": 8}[next(iter(budget))]  # 500 images / 32
    assert result.summary["steps"] == expected


def test_same_seed_same_weights_other_seed_other_weights(stripes_dir):
    first = train(tiny_config(stripes_dir, steps=5), progress=False).model.state_dict()
    again = train(tiny_config(stripes_dir, steps=5), progress=False).model.state_dict()
    other = train(tiny_config(stripes_dir, steps=5, seed=1), progress=False).model.state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("schedule", ["none", "cosine", "onecycle", "step"])
def test_every_optimizer_and_schedule_runs(stripes_dir, optimizer, schedule):
    result = train(tiny_config(stripes_dir, steps=4, optimizer=optimizer, schedule=schedule),
                   progress=False)  # fmt: skip
    assert result.summary["steps"] == 4


def test_step_schedule_multiplies_the_rate_once_at_its_share_of_the_budget():
    from seqmnist.config import TrainConfig
    from seqmnist.training.optim import build_schedule

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.5)
    config = TrainConfig(
        schedule="step", lr=0.5, decay_at=0.25, decay_factor=0.2, epochs=None, steps=8
    )
    schedule = build_schedule(optimizer, config, total_steps=8)
    rates = []
    for _ in range(8):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5, 0.5] + [0.1] * 6)


def test_permuted_run_saves_and_reloads_its_permutation(stripes_dir, tmp_path):
    train(tiny_config(stripes_dir, steps=3, view="permuted", permutation_seed=7),
          tmp_path / "run", progress=False)  # fmt: skip
    run = load_run(tmp_path / "run")
    expected = torch.randperm(30, generator=torch.Generator().manual_seed(7))
    assert torch.equal(run.model.view.permutation, expected)


def test_bf16_autocast_trains(stripes_dir):
    result = train(tiny_config(stripes_dir, precision="bf16"), progress=False)
    assert result.test.accuracy > 0.9


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_one_cycle_schedule_copes_with_very_short_runs(stripes_dir, steps):
    result = train(tiny_config(stripes_dir, steps=steps, schedule="onecycle"), progress=False)
    assert result.summary["steps"] == steps


def test_two_runs_training_at_once_in_threads_each_get_their_own_result(stripes_dir, monkeypatch):
    """Two runs can share a process: no signal handlers, no global seed of their own."""
    import threading
    import time

    import seqmnist.training.trainer as trainer

    configs = [tiny_config(stripes_dir, steps=20, seed=seed) for seed in (3, 4)]
    alone = [train(config, progress=False).model.state_dict() for config in configs]
    together: dict[int, dict] = {}
    build = trainer.build_model

    def slow_build(*args, **kwargs):
        time.sleep(0.2)  # between seeding and drawing: the other run would reseed here
        return build(*args, **kwargs)

    monkeypatch.setattr(trainer, "build_model", slow_build)

    def run(index: int) -> None:
        together[index] = train(configs[index], progress=False).model.state_dict()

    threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Equal up to rounding: two runs at once share torch's intra-op threads, which
    # then split (and so sum) some work differently; a different init differs by far more.
    for index, weights in enumerate(alone):
        for name, tensor in weights.items():
            assert (tensor - together[index][name]).abs().max().item() < 1e-4, name
