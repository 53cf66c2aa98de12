"""One worker of a sweep: take trials from the study and train each as an ordinary run folder.

A trial is one run: a configuration and a seed, in ``DIR/runs/NAME``, named
after its values so a retry finds the same folder and resumes from its
checkpoint. A trial stopped by SIGINT or SIGTERM (after its checkpoint) or
whose worker was killed is failed and retried once the sweep goes on; one
that fails for its own reasons (diverged, out of memory) is failed with the
reason and the sweep goes on. A pruned run stops cleanly and stays a
finished run folder. Many workers can share the study: each takes waiting
trials, which the storage hands out exactly once.

A worker can be a torchrun job (followers.py): its rank 0 runs this, the
other ranks train each trial with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from seqmnist.config import RunConfig
from seqmnist.distributed import ONE_PROCESS
from seqmnist.errors import SeqmnistError, TrainingInterrupted
from seqmnist.runs import SUMMARY_FILE, holds_run
from seqmnist.sweep.followers import Followers
from seqmnist.sweep.spec import Range, SweepSpec, describe_requirement, shortfalls
from seqmnist.sweep.study import counts, enqueue_retry
from seqmnist.training import StopRequests, StopTraining
from seqmnist.training import train as train_config

log = logging.getLogger(__name__)

RUNS = "runs"
# Summary fields kept with each trial, so a table needs no run folders (workers on
# other machines keep theirs on their own disks).
KEPT = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "params", "steps",
        "train_seconds", "samples_per_second")  # fmt: skip


class TrialFailed(Exception):
    """A trial's own failure: recorded on the trial, and the sweep goes on."""


@dataclass
class Progress:
    trial: int
    params: dict[str, Any]
    seed: int
    state: str  # complete, pruned, failed
    value: float | None
    detail: str
    counts: dict[str, int]
    best: tuple[int, float] | None


def run_worker(
    study: optuna.Study, spec: SweepSpec, out_dir: Path, max_trials: int | None = None,
    report: Callable[[Progress], None] = lambda progress: None,
    stop: StopRequests | None = None, followers: Followers | None = None,
) -> int:  # fmt: skip
    """Run trials until the sweep's budget is spent (or ``max_trials`` here); returns how many.

    ``stop`` (a ``StopRequests`` the caller entered) ends the running trial after
    a checkpoint, or, asked between trials, ends the worker before the next one.
    Under torchrun this runs on rank 0 and hands each trial to ``followers``.

    Deciding that work is left and taking a trial happen under one lock, which
    the trial lets go of as soon as it is taken: two workers on this machine
    never both take the last waiting trial, or both sample past the budget.
    (Workers on other machines cannot share the lock; if one finds the queue
    empty at the last moment, its trial is marked ``stray`` and counts for
    nothing.)
    """
    followers = followers or Followers(ONE_PROCESS)
    with followers.released_on_exit():
        return _take_trials(study, spec, out_dir, max_trials, report, stop, followers)


def _take_trials(study, spec, out_dir, max_trials, report, stop, followers) -> int:
    taking = TakingLock(out_dir)
    with taking:
        retry_abandoned(study)
    done = 0
    while max_trials is None or done < max_trials:
        _stop_if_asked(stop, "between trials")
        taking.acquire()
        if not _work_left(study, spec):
            taking.release()
            break
        study.optimize(
            lambda trial: _objective(trial, spec, out_dir, taking.release, stop, followers),
            n_trials=1,
            catch=(TrialFailed,), callbacks=[lambda study, trial: _after(study, trial, spec, report)],
            gc_after_trial=False, show_progress_bar=False,
        )  # fmt: skip
        taking.release()  # (already let go of, unless the trial never began)
        done += 1
    return done


def _stop_if_asked(stop: StopRequests | None, when: str) -> None:
    if stop is not None and stop.received:
        raise TrainingInterrupted(f"stopped by {stop.name} {when}", stop.received)


class TakingLock:
    """An exclusive lock on the sweep folder's .taking file, released at most once a hold."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / ".taking.lock"
        self._handle = None

    def acquire(self) -> None:
        self._handle = open(self.path, "w")  # noqa: SIM115 (held across calls)
        fcntl.flock(self._handle, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> TakingLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def retry_abandoned(study: optuna.Study) -> None:
    """Queue again every trial that stopped for its worker's reasons, not its own.

    Those are trials failed by a signal (SIGINT, SIGTERM: checkpoint written)
    and trials still marked running whose worker process is gone from this
    machine (SIGKILL, a crash); a worker gone from another machine is found by
    its missing heartbeats, and Optuna fails its trial (study.py). Each is
    retried once, in the same run folder, from its newest checkpoint.
    """
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = trial.user_attrs.get("worker", "").partition(":")
        if worker_host == host and pid.isdigit() and not _alive(int(pid)):
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                continue  # another worker, or a heartbeat, has failed (and retried) it
            enqueue_retry(study, trial.params, trial.user_attrs, trial.number, "its worker died")
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get("retry_of") for trial in trials}
    for trial in trials:
        stopped = trial.state == TrialState.FAIL and trial.user_attrs.get("interrupted")
        if stopped and trial.number not in retried:
            enqueue_retry(
                study, trial.params, trial.user_attrs, trial.number,
                f"stopped by {trial.user_attrs['interrupted']}",
            )  # fmt: skip


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # a dead worker's pid, given again to this one
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _work_left(study: optuna.Study, spec: SweepSpec) -> bool:
    trials = study.get_trials(deepcopy=False)
    if any(trial.state == TrialState.WAITING for trial in trials):
        return True
    if spec.is_grid:
        return False
    # Sampled configurations, each of which runs once per seed (the copies are enqueued).
    # (a trial just begun has no seed yet: it is being sampled; a retry is no new one)
    sampled = sum(_sampled_anew(trial) for trial in trials)
    configurations = -(-spec.budget() // len(spec.seeds))
    return sampled < configurations


def _sampled_anew(trial: optuna.trial.FrozenTrial) -> bool:
    """A configuration's first run: sampled (or being sampled: no seed yet), not a retry."""
    first = "seed" not in trial.user_attrs or bool(trial.user_attrs.get("sampled"))
    return first and "retry_of" not in trial.user_attrs


def _objective(
    trial: optuna.Trial, spec: SweepSpec, out_dir: Path, taken: Callable[[], None],
    stop: StopRequests | None, followers: Followers,
) -> float:  # fmt: skip
    taken()  # the trial is this worker's: the next worker may take one
    if spec.is_grid and "seed" not in trial.user_attrs:
        # Every grid run is enqueued: a trial that is none of them came from a queue that
        # another machine's worker emptied first.
        trial.set_user_attr("stray", True)
        raise TrialFailed("no grid run was left waiting")
    params = {key: _suggest(trial, key, space) for key, space in _space(spec).items()}
    seed = trial.user_attrs.get("seed")
    if seed is None:  # a configuration just sampled: its first seed
        seed = spec.seeds[0]
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("sampled", True)
    run_dir = out_dir / trial.user_attrs.get("run_dir", f"{RUNS}/{run_name(params, seed)}")
    trial.set_user_attr("run_dir", str(run_dir.relative_to(out_dir)))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    try:
        # In the try: sampled values valid one by one may not be together (r_min > r_max).
        config = spec.config_for(params, seed)
        summary = _train(trial, config, run_dir, spec, stop, followers)
    except TrainingInterrupted as interrupted:
        _stopped(trial, params, signal.Signals(interrupted.signal_number).name)
        raise  # the worker stops, and its trial runs again from its checkpoint
    except SeqmnistError as error:
        trial.set_user_attr("failure", str(error))
        raise TrialFailed(str(error)) from None
    except Exception as error:  # a bug, or the machine: the reason is kept
        log.exception("trial %d failed", trial.number)
        trial.set_user_attr("failure", f"{type(error).__name__}: {error}")
        if followers.ranks.distributed:
            raise  # the other ranks may be anywhere: this job cannot go on
        raise TrialFailed(str(error)) from None  # the sweep goes on
    except BaseException as stopped:  # (KeyboardInterrupt where no StopRequests holds SIGINT)
        _stopped(trial, params, type(stopped).__name__)
        raise
    for key in KEPT:
        trial.set_user_attr(key, summary.get(key))
    # As trained, for `sweep best` where the run folder is on another worker's disk.
    trial.set_user_attr("config", config.to_dict())
    if "stopped" in summary:
        trial.set_user_attr("stopped", summary["stopped"]["reason"])
        raise optuna.TrialPruned(summary["stopped"]["reason"])
    # Optuna's samplers steer away from, and best_trial passes over, a run that misses.
    for name, gap in shortfalls(spec.require, summary).items():
        trial.set_constraint(name, gap)
    return float(summary[spec.metric])


def _stopped(trial: optuna.Trial, params: dict[str, Any], why: str) -> None:
    """A trial its worker is stopped in: queued again by that worker, the one owner of it."""
    trial.set_user_attr("interrupted", why)
    enqueue_retry(trial.study, params, trial.user_attrs, trial.number, f"stopped by {why}")


def _train(
    trial: optuna.Trial, config: RunConfig, run_dir: Path, spec: SweepSpec,
    stop: StopRequests | None, followers: Followers,
) -> dict[str, Any]:  # fmt: skip
    if (run_dir / SUMMARY_FILE).is_file():  # finished before its worker was stopped
        return json.loads((run_dir / SUMMARY_FILE).read_text())
    # Always reported: the study's pruner decides (spec.pruner "none" never prunes).
    callbacks = (_pruning_callback(trial, spec),)
    # A retried trial goes on from its newest checkpoint (from step 0 if it had none).
    resume = holds_run(run_dir)
    _stop_if_asked(stop, "before the trial began")
    followers.hand({"config": config.to_dict(), "run_dir": str(run_dir), "resume": resume})
    try:
        result = train_config(
            config, run_dir, progress=False, callbacks=callbacks, resume=resume, stop=stop
        )
    except TrainingInterrupted:
        followers.stopped_with_us()  # every rank stopped at this step, and left
        raise
    except SeqmnistError:
        raise  # every rank failed alike (agreed checks): they listen for the next trial
    except BaseException:
        followers.stopped_with_us()  # this rank alone: the others are not listening
        raise
    return result.summary


def _pruning_callback(trial: optuna.Trial, spec: SweepSpec):
    def callback(record) -> None:
        if record["kind"] != "epoch" or spec.metric not in record:
            return
        trial.report(record[spec.metric], record["step"])
        if trial.should_prune():
            raise StopTraining(f"pruned by Optuna at step {record['step']}")

    return callback


def _space(spec: SweepSpec) -> dict[str, Any]:
    return spec.grid if spec.is_grid else spec.sample


def _suggest(trial: optuna.Trial, key: str, space) -> Any:
    if not isinstance(space, Range):
        return trial.suggest_categorical(key, list(space))
    if space.integer:
        step = int(space.step or 1)
        return trial.suggest_int(key, int(space.low), int(space.high), step=step, log=space.log)
    return trial.suggest_float(key, space.low, space.high, step=space.step, log=space.log)


def run_name(params: dict[str, Any], seed: int) -> str:
    """A folder name from a run's values, "cell-gru_lr-0.003_seed-1_3f2a9c01d4".

    The readable part may be cut short or round a value; the seed and a hash of
    every exact value are never cut, so two runs never share a folder.
    """
    parts = [f"{key.rsplit('.', 1)[-1]}-{_short(value)}" for key, value in params.items()]
    readable = re.sub(r"[^A-Za-z0-9._,=-]", "-", "_".join(parts))[:90]
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return "_".join(part for part in (readable, f"seed-{seed}", digest) if part)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _after(study, trial, spec: SweepSpec, report) -> None:
    """Queue a sampled configuration's other seeds, and say how the sweep stands."""
    if trial.state == TrialState.COMPLETE and trial.user_attrs.get("sampled"):
        for seed in spec.seeds[1:]:
            study.enqueue_trial(trial.params, user_attrs={"seed": seed})
    best = None
    with contextlib.suppress(ValueError):  # ValueError: nothing complete yet
        best = (study.best_trial.number, study.best_value)
    value = trial.value if trial.state == TrialState.COMPLETE else None
    detail = trial.user_attrs.get("failure") or trial.user_attrs.get("stopped") or ""
    if value is not None:
        missed = [name for name, gap in trial.constraints.items() if gap > 0]
        detail = ", ".join(
            f"misses {describe_requirement(name, spec.require[name])}: {trial.user_attrs.get(name)}"
            for name in missed
        )
    report(Progress(
        trial.number, dict(trial.params), trial.user_attrs.get("seed"),
        {"COMPLETE": "complete", "PRUNED": "pruned"}.get(trial.state.name, "failed"),
        value, detail, counts(study), best,
    ))  # fmt: skip
