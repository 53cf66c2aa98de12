"""Workers on one study: every trial once, through kills, signals and pruning."""

import json
import signal
from pathlib import Path

import optuna
import pytest
from conftest import finish, runs_of, trials, wait_for, worker

from seqmnist.cli import main
from seqmnist.sweep.spec import load_spec
from seqmnist.sweep.study import open_study
from seqmnist.sweep.worker import run_worker

GRID_ONE = '[grid]\n"train.lr" = [0.01]\n'
COMPLETE, FAIL, PRUNED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                          optuna.trial.TrialState.PRUNED)  # fmt: skip


def test_two_workers_share_a_grid_and_run_each_trial_once(write_spec, tmp_path):
    spec, out = write_spec(steps=150), tmp_path / "sweep"
    first, second = worker(spec, out), worker(spec, out)
    results = [finish(first), finish(second)]
    for status, _, errors in results:
        assert status == 0, errors
    found = trials(out)
    expected = sorted(
        (str(sorted({"model.cell": cell, "train.lr": lr}.items())), seed)
        for cell in ("lstm", "gru") for lr in (0.003, 0.01) for seed in (0, 1)
    )  # fmt: skip
    assert runs_of(found) == expected  # all 8, none twice
    assert len(found) == 8
    for trial in found:
        summary = json.loads((out / trial.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["val_accuracy"] == trial.value
        assert json.loads((out / trial.user_attrs["run_dir"] / "config.json").read_text())[
            "train"]["seed"] == trial.user_attrs["seed"]  # fmt: skip
    assert len({t.user_attrs["worker"] for t in found}) == 2  # both took a share


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM],
                         ids=["sigkill", "sigint", "sigterm"])  # fmt: skip
def test_a_stopped_worker_started_again_finishes_the_sweep(how, write_spec, tmp_path):
    spec = write_spec(tables='[grid]\n"train.lr" = [0.003, 0.01]\n', seeds=(0,), steps=400)
    out = tmp_path / "sweep"
    process = worker(spec, out)

    def first_trial_has_a_checkpoint():
        folders = list((out / "runs").glob("*/checkpoints/step-*.json"))
        return bool(folders)

    wait_for(first_trial_has_a_checkpoint, what="the first trial's first checkpoint")
    process.send_signal(how)
    status, _, errors = finish(process, timeout=60)
    if how == signal.SIGKILL:
        assert status == -signal.SIGKILL
    else:
        assert status == 128 + how, errors
        assert "continue the sweep with: seqmnist sweep run" in errors.strip().splitlines()[-1]
    status, output, errors = finish(worker(spec, out))
    assert status == 0, errors
    found = trials(out)
    assert len(runs_of(found)) == 2 and len(set(runs_of(found))) == 2  # none lost, none twice
    stopped = [t for t in found if t.state == FAIL]
    assert len(stopped) == 1
    retry = next(t for t in found if t.user_attrs.get("retry_of") == stopped[0].number)
    assert (
        retry.state == COMPLETE and retry.user_attrs["run_dir"] == stopped[0].user_attrs["run_dir"]
    )
    # The retry went on from the checkpoint: the run folder's records are one run's.
    lines = (out / retry.user_attrs["run_dir"] / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for kind in ("batch", "epoch"):
        steps = [record["step"] for record in records if record["kind"] == kind]
        assert steps == sorted(set(steps)), kind  # no step recorded twice: resumed, not redone
    summary = json.loads((out / retry.user_attrs["run_dir"] / "summary.json").read_text())
    assert summary["steps"] == 400
    # A stopped trial is not a failure of its configuration, nor a second run of it.
    rows = json.loads(_table(out))
    assert [(row["seeds"], row["failed"]) for row in rows] == [(1, 0), (1, 0)]


class Condemn(optuna.pruners.BasePruner):
    """Prunes the trials it is told to, at their first report."""

    def __init__(self, numbers):
        self.numbers = set(numbers)

    def prune(self, study, trial) -> bool:
        return trial.number in self.numbers


def test_pruning_stops_a_condemned_trial_cleanly(write_spec, tmp_path, one_torch_thread):
    spec = load_spec(
        write_spec(tables='[grid]\n"train.lr" = [0.003, 0.01]\n', seeds=(0,), steps=120)
    )
    out = tmp_path / "sweep"
    created = open_study(spec, out)
    study = optuna.load_study(study_name=created.study_name, storage=created._storage,
                              pruner=Condemn({1}))  # fmt: skip
    assert run_worker(study, spec, out) == 2
    first, second = study.get_trials()
    assert first.state == COMPLETE and second.state == PRUNED
    summary = json.loads((out / second.user_attrs["run_dir"] / "summary.json").read_text())
    assert summary["stopped"]["reason"].startswith("pruned by Optuna")
    assert summary["steps"] < 120  # it stopped at its first validation
    rows = json.loads(_table(out))
    assert {row["configuration"]: (row["seeds"], row["pruned"]) for row in rows} == {
        "lr=0.003": (1, 0), "lr=0.01": (0, 1),
    }  # fmt: skip


def test_a_failing_trial_is_marked_and_the_sweep_goes_on(write_spec, tmp_path, one_torch_thread):
    # A model too large for memory is valid in the spec, and refused when its trial builds it.
    tables = '[grid]\n"model.hidden_sizes" = [[200000], [16]]\n'
    spec = load_spec(write_spec(tables=tables, seeds=(0,), steps=40, hidden=""))
    out = tmp_path / "sweep"
    study = open_study(spec, out)
    assert run_worker(study, spec, out) == 2
    states = {t.params["model.hidden_sizes"]: t for t in study.get_trials()}
    assert states["16"].state == COMPLETE
    assert (
        states["200000"].state == FAIL
        and "more than this machine" in states["200000"].user_attrs["failure"]
    )
    rows = {row["configuration"]: row for row in json.loads(_table(out))}
    assert rows["hidden_sizes=200000"]["failed"] == 1 and rows["hidden_sizes=16"]["seeds"] == 1


def test_a_sampled_sweep_runs_each_configuration_on_every_seed(
    write_spec, tmp_path, one_torch_thread
):
    tables = '[sample]\n"train.lr" = {low = 0.001, high = 0.03, log = true}\n"model.cell" = ["lstm", "gru"]\n'
    spec = load_spec(write_spec(tables=tables, seeds=(0, 1), extra="trials = 4", steps=30))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    found = trials(out)
    assert len(found) == 4 and all(t.state == COMPLETE for t in found)
    by_configuration = {}
    for trial in found:
        by_configuration.setdefault(json.dumps(trial.params, sort_keys=True), []).append(
            trial.user_attrs["seed"]
        )
    assert sorted(map(sorted, by_configuration.values())) == [[0, 1], [0, 1]]


def test_table_best_and_plot(write_spec, tmp_path, capsys, one_torch_thread):
    spec = load_spec(write_spec(steps=30))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    rows = json.loads(_table(out))
    assert len(rows) == 4 and all(row["seeds"] == 2 for row in rows)
    means = [row["val_accuracy_mean"] for row in rows]
    assert means == sorted(means, reverse=True)
    top = rows[0]
    summaries = [json.loads((out / d / "summary.json").read_text()) for d in top["run_dirs"]]
    assert top["test_accuracy_mean"] == pytest.approx(
        sum(s["test_accuracy"] for s in summaries) / 2
    )
    assert main(["sweep", "table", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].startswith(top["configuration"]) and " ± " in text
    assert main(["sweep", "table", str(out), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("configuration,seeds")
    best = tmp_path / "best.toml"
    assert main(["sweep", "best", str(out), "--out", str(best)]) == 0
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["train", "--config", str(best), "--out", str(again), "--steps", "5"]) == 0
    trained = json.loads((again / "config.json").read_text())
    cell, lr = top["params"]["model.cell"], top["params"]["train.lr"]
    assert (trained["model"]["cell"], trained["train"]["lr"]) == (cell, lr)
    assert main(["sweep", "plot", str(out)]) == 0
    assert (out / "plots" / "sweep.png").stat().st_size > 1000


def _table(out) -> str:
    from seqmnist.sweep.table import sweep_rows

    return json.dumps(sweep_rows(out))


def test_required_bounds_order_the_table_and_decide_the_best(
    write_spec, tmp_path, capsys, one_torch_thread
):
    """The fastest-recipe sweep's form: a metric, and a bound a result must meet to count."""
    tables = '[grid]\n"model.hidden_sizes" = [[4], [32]]\n[require]\nparams = 1000\n'
    # Most parameters is best by the metric: only the bound puts the small model first.
    extra = 'metric = "params"\ndirection = "maximize"'
    spec = load_spec(write_spec(tables, seeds=(0,), steps=20, hidden="", extra=extra))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    rows = json.loads(_table(out))
    by_size = {row["params"]["model.hidden_sizes"]: row for row in rows}
    small, large = by_size["4"], by_size["32"]
    assert small["parameters"] <= 1000 < large["parameters"]
    assert (small["meets"], large["meets"]) == (True, False)
    assert rows == [small, large]  # the one that misses comes after, though best by the metric
    assert small["requirements"] == ["params <= 1000"]
    # Optuna's own best trial is the feasible one too.
    study = optuna.load_study(study_name="seqmnist-sweep", storage=f"sqlite:///{out}/sweep.db")
    assert study.best_trial.params["model.hidden_sizes"] == "4"
    assert main(["sweep", "table", str(out)]) == 0
    text = capsys.readouterr().out
    assert "params <= 1000" in text.splitlines()[0]
    assert [line.split()[-1] for line in text.splitlines()[1:]] == ["met", "missed"]
    best = tmp_path / "best.toml"
    assert main(["sweep", "best", str(out), "--out", str(best)]) == 0
    assert "hidden_sizes = [4]" in best.read_text()


def test_a_sweep_none_of_whose_runs_meets_the_bound_has_no_best(
    write_spec, tmp_path, one_error_line, one_torch_thread
):
    spec = load_spec(write_spec("[require]\nval_accuracy = 1.5\n", seeds=(0,), steps=5))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    best = tmp_path / "best.toml"
    one_error_line(["sweep", "best", str(out), "--out", str(best)], "val_accuracy >= 1.5")
    assert not best.exists()


def test_a_sweep_folder_moved_elsewhere_still_reads(write_spec, tmp_path, one_torch_thread):
    import shutil

    spec = load_spec(write_spec(GRID_ONE, seeds=(0,), steps=5))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    moved = Path(shutil.move(out, tmp_path / "elsewhere"))
    rows = json.loads(_table(moved))
    assert [row["seeds"] for row in rows] == [1]


def test_best_works_where_the_runs_were_trained_on_another_machine(
    write_spec, tmp_path, capsys, one_torch_thread
):
    """The run folders stay on the workers' disks; the study keeps each trial's config."""
    import shutil

    from seqmnist.config import RunConfig, load_toml
    from seqmnist.presets import get_preset

    spec = load_spec(write_spec(GRID_ONE, seeds=(0,), steps=5))
    out = tmp_path / "sweep"
    run_worker(open_study(spec, out), spec, out)
    (run_dir,) = (out / "runs").iterdir()
    trained = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    shutil.rmtree(out / "runs")
    best = tmp_path / "best.toml"
    assert main(["sweep", "best", str(out), "--out", str(best)]) == 0
    written = load_toml(best, get_preset("row-lstm"))
    assert (written.model, written.train, written.data) == (
        trained.model, trained.train, trained.data
    )  # fmt: skip
