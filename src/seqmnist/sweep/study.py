"""A sweep's Optuna study: created once, joined by every worker, with the spec it was made for.

Storage is a SQLite file inside the sweep's folder unless a URL says
otherwise (PostgreSQL, for workers on many machines). Creating a study while
another worker creates it races in Optuna (table creation, the study row),
so creation happens once, under a lock where the storage is a local file
and with retries for a shared server; a grid's every run is enqueued then,
so workers only ever take waiting trials, each exactly once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from seqmnist.errors import ConfigError
from seqmnist.files import atomic_write_json
from seqmnist.sweep.spec import SweepSpec

log = logging.getLogger(__name__)

STUDY_NAME = "seqmnist-sweep"
DATABASE = "sweep.db"
INFO_FILE = "sweep.json"
# Seconds between a running trial's heartbeats, and after which a trial whose
# worker went silent (killed on another machine) is failed and retried.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / DATABASE).resolve()}"


def open_study(spec: SweepSpec, out_dir: Path, storage_url: str | None = None) -> optuna.Study:
    """Create the sweep's study, or join it if it exists and was made from the same spec."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a folder for the sweep")
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or default_storage(out_dir)
    with _creation_lock(out_dir):
        storage = _storage(url)
        try:
            study = optuna.create_study(
                storage=storage, study_name=STUDY_NAME, direction=spec.direction,
                sampler=sampler_for(spec), pruner=pruner_for(spec),
            )  # fmt: skip
        except optuna.exceptions.DuplicatedStudyError:
            study = _join(spec, storage, out_dir)
        else:
            _enqueue_grid(study, spec)
            study.set_user_attr("fingerprint", spec.fingerprint())
            study.set_user_attr("metric", spec.metric)
            study.set_user_attr("require", spec.require)
            study.set_user_attr("ready", True)  # joiners wait for this: the grid is all enqueued
    # Where the study lives, for `sweep table DIR` (without a password); none where it is
    # the folder's own sweep.db, so the folder can be moved or copied and still read.
    shared = _without_password(storage_url) if storage_url else None
    atomic_write_json(out_dir / INFO_FILE, {"storage": shared, "study": STUDY_NAME})
    return study


def load_study(out_dir: Path, storage_url: str | None = None) -> optuna.Study:
    """A finished or running sweep's study, to read (tables, plots)."""
    # The storage the sweep was run with, as sweep.json records it (a password is not kept:
    # give --storage then).
    storage_url = storage_url or read_info(out_dir).get("storage")
    url = storage_url or default_storage(out_dir)
    if storage_url is None and not (out_dir / DATABASE).exists():
        raise ConfigError(
            f"{out_dir} holds no sweep ({DATABASE} is missing); give the --out folder of "
            "`seqmnist sweep run`, with --storage if its study lives in a database server"
        )
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=_storage(url))
    except KeyError:
        raise ConfigError(f"the storage for {out_dir} holds no seqmnist sweep") from None


def sampler_for(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.is_grid:
        # Every grid run is enqueued; a worker never samples beyond them.
        return optuna.samplers.RandomSampler(seed=0)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=None)
    return optuna.samplers.TPESampler(seed=None)


def pruner_for(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=len(spec.seeds) + 1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def enqueue_retry(
    study: optuna.Study, params: dict, user_attrs: dict, number: int, why: str
) -> None:
    """Queue a trial again, in its own run folder (so it goes on from its checkpoint)."""
    kept = {key: user_attrs[key] for key in ("seed", "run_dir", "sampled") if key in user_attrs}
    study.enqueue_trial(params, user_attrs={**kept, "retry_of": number, "retry_why": why})


def _retry_silent(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    # Optuna calls this once, in the worker that failed the trial for its missing heartbeats.
    enqueue_retry(study, trial.params, trial.user_attrs, trial.number, "its worker went silent")


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count: not a stray (see worker.py), not one failed and run again."""
    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get("retry_of") for trial in trials}
    return [t for t in trials if not t.user_attrs.get("stray") and t.number not in retried]


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state, of the trials that count."""
    trials = counted(study)
    return {
        state.name.lower(): sum(trial.state == state for trial in trials)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                      TrialState.RUNNING, TrialState.WAITING)
    }  # fmt: skip


def _join(spec: SweepSpec, storage, out_dir: Path) -> optuna.Study:
    study = optuna.load_study(
        study_name=STUDY_NAME, storage=storage, sampler=sampler_for(spec), pruner=pruner_for(spec)
    )
    deadline = time.monotonic() + 60
    while not study.user_attrs.get("ready"):  # another worker is still creating it
        if time.monotonic() > deadline:
            raise ConfigError(
                f"the sweep in {out_dir} was never finished being created; start it again in a new --out folder"
            )
        time.sleep(0.5)
        study = optuna.load_study(
            study_name=STUDY_NAME,
            storage=storage,
            sampler=sampler_for(spec),
            pruner=pruner_for(spec),
        )
    if study.user_attrs.get("fingerprint") != spec.fingerprint():
        raise ConfigError(
            f"{out_dir} holds a sweep made from a different spec; use a new --out folder, "
            "or the spec it was started with"
        )
    return study


def _enqueue_grid(study: optuna.Study, spec: SweepSpec) -> None:
    if not spec.is_grid:
        return
    runs = [(point, seed) for point in spec.grid_points() for seed in spec.seeds]
    for point, seed in runs[: spec.budget()]:
        study.enqueue_trial(point, user_attrs={"seed": seed})


def _storage(url: str) -> optuna.storages.RDBStorage:
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # Heartbeats are how a trial whose worker died on another machine is found.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=_retry_silent,
            )  # fmt: skip
        except sqlalchemy.exc.DBAPIError as error:
            # Another worker creating the tables on a shared server, or the server starting.
            if attempt == 4:
                raise ConfigError(
                    f"cannot open the study storage {_without_password(url)}: {error.orig}"
                ) from None
            time.sleep(0.5 * (attempt + 1))
        except (
            sqlalchemy.exc.ArgumentError,
            sqlalchemy.exc.NoSuchModuleError,
            ImportError,
        ) as error:
            raise ConfigError(
                f"--storage {_without_password(url)} is no database URL SQLAlchemy can open ({error}); "
                "give e.g. postgresql://user@host/db or sqlite:///path"
            ) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(out_dir: Path) -> Iterator[None]:
    """One worker at a time creates or joins the study (every worker of a sweep on one
    machine shares its folder; on many machines the database's own checks decide)."""
    with open(out_dir / ".sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def read_info(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}
