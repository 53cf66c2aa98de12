"""A run's lifecycle: set up model and data, run the loop, keep the best weights, test, save."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqmnist.config import RunConfig
from seqmnist.data import ImageSplits, load_dataset, resolve_data_dir
from seqmnist.distributed import Ranks, barrier, broadcast, environment_ranks
from seqmnist.errors import RunError, SeqmnistError
from seqmnist.evaluation import DeviceSplit, Evaluation, evaluate
from seqmnist.files import atomic_write_json
from seqmnist.model import count_parameters
from seqmnist.presets import recipe_status
from seqmnist.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    ModelInfo,
    build_model,
    check_new_run_dir,
    make_run_dir,
    save_weights,
    weights_damage,
)
from seqmnist.runtime import Runtime
from seqmnist.training import compilation
from seqmnist.training.checkpoint import CheckpointStore
from seqmnist.training.interrupts import StopRequests
from seqmnist.training.loop import TrainingLoop
from seqmnist.training.progress import (
    TENSORBOARD_DIR,
    MetricsLog,
    Record,
    TensorBoardLog,
    keep_records_through,
)
from seqmnist.version import package_version

logger = logging.getLogger("seqmnist.train")


@dataclass(frozen=True)
class TrainResult:
    config: RunConfig
    run_dir: Path | None
    model: nn.Module
    info: ModelInfo
    validation: Evaluation
    test: Evaluation
    summary: dict[str, Any]


_INITIALISING = threading.Lock()


def _own_random_state(function: Callable) -> Callable:
    """Run ``function`` on a fork of torch's global random state, given back afterwards.

    A run seeds the global generator (weight initialisation and dropout draw
    from it, and its checkpoints save and restore it); forked, the caller's
    state is as it was, so runs in one process leave nothing to each other.
    Taking and giving back the state happen under the lock a run seeds and
    builds its model under, so one run's ending never lands inside another's
    initialisation.
    """

    @functools.wraps(function)
    def forked(*args, **kwargs):
        cuda = torch.cuda.is_available()
        with _INITIALISING:
            saved = torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else []
        try:
            return function(*args, **kwargs)
        finally:
            with _INITIALISING:
                torch.set_rng_state(saved[0])
                if cuda:
                    torch.cuda.set_rng_state_all(saved[1])

    return forked


@_own_random_state
def train(
    config: RunConfig,
    out_dir: Path | str | None = None,
    *,
    splits: ImageSplits | None = None,
    progress: bool | None = None,
    callbacks: tuple[Callable[[Record], None], ...] = (),
    resume: bool = False,
    overwrite: bool = False,
    model: nn.Module | None = None,
    runtime: Runtime | None = None,
    stop: StopRequests | None = None,
) -> TrainResult:
    """Train ``config``; with ``out_dir``, write the run there. Returns the best-validation model.

    With ``out_dir``, the training state is checkpointed (every ``checkpoint_every``
    steps and at each epoch end). ``stop``, a ``StopRequests`` the caller has
    entered (it holds SIGINT and SIGTERM; ``train`` installs no handlers of its
    own), ends training after the step it was asked in (with a checkpoint where there
    is an ``out_dir``), as TrainingInterrupted.
    ``resume`` continues the run in ``out_dir`` from its newest intact checkpoint;
    the result is the same as if it had never stopped. A folder that already holds
    files is refused unless ``overwrite`` is set and it holds a run, which is then
    replaced. ``model`` trains a model built elsewhere (it must match
    ``config.model``), so the caller keeps a handle on it. ``runtime`` defaults
    to what ``config.train`` asks for on this machine.
    """
    called = time.perf_counter()
    if resume and out_dir is None:
        raise ValueError("resume needs the run directory as out_dir")
    ranks = runtime.ranks if runtime is not None else environment_ranks()
    if ranks.distributed:  # joined first, so every rank learns what rank 0 finds below
        runtime = runtime or Runtime.for_training(config.train)
    # Checked before any work, so a refused folder costs nothing and loses nothing.
    run_dir = _agreed_run_dir(out_dir, resume, overwrite, ranks)
    runtime = runtime or Runtime.for_training(config.train)
    main = ranks.is_main
    if splits is None:
        splits = load_dataset(
            config.data.dataset, config.data.data_dir, config.data.validation_size
        )
    data_folder = _data_folder(config)
    info = ModelInfo(splits.image_shape, tuple(splits.class_names))
    # Seeding and initialising are one step: runs training in threads of one process
    # draw their initial weights from torch's one global generator, one run at a time.
    with _INITIALISING:
        torch.manual_seed(config.train.seed)
        model = model if model is not None else build_model(config.model, info)
    model = model.to(runtime.device)
    train_split, val_split, test_split = (
        DeviceSplit.from_arrays(*splits.split(name), runtime.device)
        for name in ("train", "val", "test")
    )
    if run_dir is not None and not resume and main:
        make_run_dir(run_dir, config, overwrite=overwrite)
    barrier(runtime.ranks)  # the folder is ready before any other process looks in it
    total_steps = config.train.total_steps(len(train_split))
    checkpoints = None
    if run_dir is not None:
        shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
        checkpoints = CheckpointStore(run_dir, config, shapes)
    start = _resume_point(run_dir, checkpoints) if resume else None
    if start is not None and main:
        keep_records_through(run_dir / METRICS_FILE, start.step)
    elif checkpoints is not None and main:
        checkpoints.clear()
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
    if config.train.tensorboard and run_dir is not None and main:
        purge_after = start.step if start is not None else None
        callbacks = (*callbacks, TensorBoardLog(run_dir / TENSORBOARD_DIR, purge_after))
    log = (
        MetricsLog(run_dir / METRICS_FILE if run_dir else None, total_steps, progress, callbacks)
        if main
        else MetricsLog(None, total_steps, False, callbacks)
    )
    compile_choice = compilation.choose(config, runtime, total_steps, model.view.steps)
    if compile_choice.compiled:  # said, since the first step waits for the compiler
        logger.info("training steps run through torch.compile (%s)", compile_choice.reason)
    try:
        loop = TrainingLoop(
            config.train, runtime, model, train_split, val_split, info.num_classes, total_steps,
            log, checkpoints, stop, compiled=compile_choice.compiled,
        )  # fmt: skip
        if start is not None:
            loop.restore(start)
            log.advance(loop.step)
        setup_seconds = time.perf_counter() - called
        loop.run()
        train_seconds = loop.elapsed()
    finally:
        log.close()
    model.load_state_dict(loop.best_state)
    validation = loop.best_validation
    # The same call, on the same weights and data, as `seqmnist eval` makes.
    test = evaluate(
        model, test_split.images, test_split.labels, split="test", num_classes=info.num_classes,
        batch_size=config.train.eval_batch_size, ranks=runtime.ranks,
    )  # fmt: skip
    summary = _summary(config, runtime, model, loop, validation, test, train_seconds)
    summary["setup_seconds"] = setup_seconds
    summary["compile"] = _compile_summary(compile_choice, loop)
    summary["data_folder"] = data_folder
    # Whether this is the whole of a preset's recipe or part of one (a partial
    # run's figure must never stand beside the paper's).
    summary["recipe"] = recipe_status(config, len(train_split))
    if loop.stopped is not None:
        summary["stopped"] = loop.stopped
        if (
            summary["recipe"] is not None
        ):  # stopped short of its recipe: partial, whatever its budget
            summary["recipe"] = {**summary["recipe"], "steps": loop.step, "partial": True}
    if run_dir is not None and main:
        # The checksum in summary.json is how eval, predict and export know the
        # weights they read are the ones written here.
        summary["checksums"] = {WEIGHTS_FILE: save_weights(run_dir / WEIGHTS_FILE, model, info)}
        atomic_write_json(run_dir / SUMMARY_FILE, summary)
    return TrainResult(config, run_dir, model, info, validation, test, summary)


def _agreed_run_dir(
    out_dir: Path | str | None, resume: bool, overwrite: bool, ranks: Ranks
) -> Path | None:
    """The run folder, checked by rank 0 (under torchrun it alone writes it); a refusal
    is raised on every rank, so none goes on to wait for the others."""
    refusal = None
    run_dir = _path(out_dir)
    if ranks.is_main:
        try:
            run_dir = _check_run_dir(out_dir, resume, overwrite)
        except RunError as error:
            refusal = str(error)
    refusal = broadcast(refusal, ranks)
    if refusal is not None:
        raise RunError(refusal)
    return run_dir


def _path(out_dir: Path | str | None) -> Path | None:
    return Path(out_dir) if out_dir is not None else None


def _check_run_dir(out_dir: Path | str | None, resume: bool, overwrite: bool) -> Path | None:
    if out_dir is None:
        return None
    if str(out_dir) == "":
        raise RunError("the run directory is an empty path; give a folder name, e.g. runs/mine")
    run_dir = Path(out_dir)
    if resume:
        if not run_dir.is_dir():
            raise RunError(f"run directory {run_dir} does not exist; give the --out of a run")
        if not (run_dir / CONFIG_FILE).is_file():
            raise RunError(
                f"{run_dir} holds no run to resume (no {CONFIG_FILE}); give the --out of a run"
            )
        for name in (WEIGHTS_FILE, SUMMARY_FILE, METRICS_FILE):
            if (run_dir / name).is_dir():
                raise RunError(
                    f"{run_dir / name} is a folder where the run writes a file; move it away "
                    "and resume again"
                )
        if (damage := weights_damage(run_dir)) is not None:
            logger.warning("%s; resuming rewrites it from the last checkpoint", damage)
        return run_dir
    check_new_run_dir(run_dir, overwrite)
    return run_dir


def _data_folder(config: RunConfig) -> str | None:
    """The folder the data was read from, for summary.json (see runs.run_split)."""
    try:
        return str(resolve_data_dir(config.data.dataset, config.data.data_dir).absolute())
    except SeqmnistError:  # no home folder for a cache: nothing worth recording
        return None


def _resume_point(run_dir: Path, checkpoints: CheckpointStore):
    """The checkpoint to go on from; None for a run stopped before its first one."""
    if not checkpoints.paths():
        # Said quietly: the CLI has already printed that it is resuming this run.
        logger.debug("%s stopped before its first checkpoint: starting it from step 0", run_dir)
        return None
    return checkpoints.latest()


def _compile_summary(choice: compilation.CompileChoice, loop: TrainingLoop) -> dict[str, Any]:
    """Whether the steps ran compiled, and why; a compile that failed says so."""
    failure = loop.step_fn.forward.failure
    if failure:
        return {"compiled": False, "reason": f"{choice.reason}; compiling failed ({failure})"}
    return choice.to_dict()


def _summary(
    config: RunConfig, runtime: Runtime, model: nn.Module, loop: TrainingLoop,
    validation: Evaluation, test: Evaluation, train_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    samples = loop.step * loop.batch_size
    return {
        "preset": config.name,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": validation.accuracy,
        "val_loss": validation.loss,
        "params": count_parameters(model),
        "steps": loop.step,
        "samples": samples,
        "best_step": loop.best_step,
        "train_seconds": train_seconds,
        "samples_per_second": samples / train_seconds,
        "runtime": runtime.to_dict(),
        "seqmnist_version": package_version(),
    }
