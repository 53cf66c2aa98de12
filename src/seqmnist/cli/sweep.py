"""`seqmnist sweep run|table|plot|best`: many runs of one spec on an Optuna study."""

from __future__ import annotations

import argparse
import signal
import sys

from seqmnist.cli.paths import path_argument, positive_int
from seqmnist.cli.startup import ignore_stop_signals, signals_held
from seqmnist.distributed import environment_ranks
from seqmnist.errors import ConfigError

STORAGE_HELP = (
    "an Optuna storage URL (postgresql://..., sqlite:///...) shared by workers on many "
    "machines (default: DIR/sweep.db)"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a sweep of many runs on an Optuna study, and table its results",
        description=(
            "Sweeps: a TOML spec names a base (preset or config file), fixed overrides, a "
            "[grid] or [sample] space over configuration fields, seeds, the metric and a "
            "budget; every trial is an ordinary run folder under DIR/runs."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    run = actions.add_parser(
        "run", help="run (or join, or continue) a sweep",
        description=(
            "Run a sweep's trials until its budget is spent. Start the same command again "
            "to continue a stopped sweep, or on more machines (with --storage) to share it."
        ),
    )  # fmt: skip
    run.add_argument("spec", type=path_argument, metavar="SPEC", help="the sweep's TOML spec")
    run.add_argument("--out", type=path_argument, required=True, metavar="DIR",
                     help="the sweep's folder: its study and its runs")  # fmt: skip
    run.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
    run.add_argument("--trials", type=positive_int, metavar="N",
                     help="run at most N trials in this worker, within the spec's budget "
                          "(default: until the budget is spent)")  # fmt: skip
    run.set_defaults(handler=run_sweep, next_step=_next_step)
    for action, help_text in (
        ("table", "print the results grouped over seeds: mean ± std"),
        ("plot", "draw the results grouped over seeds, as DIR/plots/sweep.png"),
        ("best", "write the best configuration as a TOML file for train --config"),
    ):
        sub = actions.add_parser(action, help=help_text, description=help_text.capitalize() + ".")
        sub.add_argument("sweep_dir", type=path_argument, metavar="DIR", help="the sweep's folder")
        sub.add_argument("--storage", metavar="URL", help=STORAGE_HELP)
        if action == "table":
            form = sub.add_mutually_exclusive_group()
            form.add_argument("--json", action="store_true", help="print JSON")
            form.add_argument("--csv", action="store_true", help="print CSV")
        if action == "best":
            sub.add_argument("--out", type=path_argument, required=True, metavar="FILE",
                             help="the TOML file to write: the configuration with the best mean "
                                  "metric among those finished on the most seeds")  # fmt: skip
        sub.set_defaults(handler=HANDLERS[action], preload=("numpy",))


def _optuna():
    """Optuna, imported with the signals held like every native library (see startup.py)."""
    with signals_held():
        try:
            import optuna
        except ImportError:
            raise ConfigError(
                "seqmnist sweep needs Optuna; install it with: pip install 'seqmnist[sweep]'"
            ) from None
    return optuna


def run_sweep(args: argparse.Namespace) -> int:
    import logging

    optuna = _optuna()

    from seqmnist.errors import TrainingInterrupted
    from seqmnist.sweep.spec import load_spec
    from seqmnist.sweep.study import counts
    from seqmnist.training import StopRequests

    # One line per trial says what happened; Optuna's and each epoch's lines would bury it.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("seqmnist.train").setLevel(logging.WARNING)

    spec = load_spec(args.spec)  # the whole spec is checked before any trial starts
    ranks = environment_ranks()
    followers = None
    if ranks.distributed:
        from seqmnist.runtime import Runtime
        from seqmnist.sweep.followers import Followers

        # The job's process group, joined on the runtime every trial starts from.
        Runtime.for_training(spec.config_for({}, spec.seeds[0]).train)
        followers = Followers(ranks)
    try:
        # The command owns the signals: a running trial stops after its checkpoint.
        with StopRequests() as stop:
            if not ranks.is_main:
                from seqmnist.sweep.followers import follow_trials

                logging.getLogger("seqmnist").setLevel(logging.ERROR)
                return follow_trials(followers, stop)
            ran, study = _work(args, spec, stop, followers)
    except TrainingInterrupted as stopped:
        ignore_stop_signals()  # on the way out: a second signal must not cut the message short
        if ranks.is_main:  # under torchrun, one line for the job
            name = signal.Signals(stopped.signal_number).name
            print(f"seqmnist: interrupted by {name}; {_next_step(args)}", file=sys.stderr)
        return stopped.exit_code
    state = counts(study)
    job = f" (a torchrun job of {ranks.world_size} processes)" if ranks.distributed else ""
    print(
        f"this worker{job} ran {ran} trials; the sweep has {state['complete']} done, "
        f"{state['pruned']} pruned, {state['fail']} failed, {state['running']} running, "
        f"{state['waiting']} waiting; see it with: seqmnist sweep table {args.out}"
    )
    return 0


def _work(args: argparse.Namespace, spec, stop, followers):
    """Open (or join) the study and run trials until the budget is spent."""
    from seqmnist.sweep.followers import Followers
    from seqmnist.sweep.study import open_study
    from seqmnist.sweep.worker import run_worker

    followers = followers or Followers(environment_ranks())
    with followers.released_on_exit():  # a torchrun job's other ranks end with rank 0
        study = open_study(spec, args.out, args.storage)
        presets = "preset" in spec.grid or "preset" in spec.sample
        base = "each on its own preset" if presets else f"on {spec.base_name}"
        seeds = f"{len(spec.seeds)} seed{'s' if len(spec.seeds) > 1 else ''} a configuration"
        way = "maximised" if spec.direction == "maximize" else "minimised"
        print(f"sweep {args.out}: up to {spec.budget()} runs, {seeds}, {base}; {spec.metric} "
              f"{way}", flush=True)  # fmt: skip
        ran = run_worker(study, spec, args.out, max_trials=args.trials, report=_print_progress,
                         stop=stop, followers=followers)  # fmt: skip
    return ran, study


def _print_progress(progress) -> None:
    values = ", ".join(
        f"{key.rsplit('.', 1)[-1]}={value}" for key, value in progress.params.items()
    )
    outcome = f"{progress.value:.4f}" if progress.value is not None else progress.state
    if progress.detail:
        outcome += f" ({progress.detail})"
    counts = progress.counts
    best = f"; best {progress.best[1]:.4f} (trial {progress.best[0]})" if progress.best else ""
    print(
        f"trial {progress.trial} [{values}{', ' if values else ''}seed={progress.seed}]: {outcome}. "
        f"{counts['complete']} done, {counts['pruned']} pruned, {counts['fail']} failed, "
        f"{counts['running']} running, {counts['waiting']} waiting{best}",
        flush=True,
    )


def _next_step(args: argparse.Namespace) -> str:
    command = f"seqmnist sweep run {args.spec} --out {args.out}"
    if args.storage:
        command += " --storage URL"
    return f"the running trial keeps its checkpoint; continue the sweep with: {command}"


def table(args: argparse.Namespace) -> int:
    _optuna()
    from seqmnist.sweep.table import format_csv, format_table, sweep_rows

    rows = sweep_rows(args.sweep_dir, args.storage)
    if args.json:
        import json

        print(json.dumps(rows, indent=2, allow_nan=False))
    elif args.csv:
        sys.stdout.write(format_csv(rows))
    else:
        print(format_table(rows))
    return 0


def plot(args: argparse.Namespace) -> int:
    _optuna()
    from seqmnist.plots.sweep import sweep_figure
    from seqmnist.sweep.table import sweep_rows

    path = sweep_figure(
        sweep_rows(args.sweep_dir, args.storage), args.sweep_dir / "plots" / "sweep.png"
    )
    print(f"wrote {path}")
    return 0


def best(args: argparse.Namespace) -> int:
    _optuna()
    import dataclasses

    from seqmnist.cli.presets import to_toml
    from seqmnist.files import atomic_write_bytes
    from seqmnist.sweep.table import best_config

    row, config = best_config(args.sweep_dir, args.storage)
    config = dataclasses.replace(
        config,
        name="sweep-best",
        description=f"the best of the sweep in {args.sweep_dir}: {row['configuration']}",
    )
    header = (
        f"# The best configuration of the sweep in {args.sweep_dir}: {row['configuration']}, "
        f"mean {row['metric']} {row['metric_mean']:.4f} over {row['seeds']} seeds.\n"
    )
    atomic_write_bytes(args.out, (header + to_toml(config) + "\n").encode(), "--out")
    print(f"wrote {args.out}: {row['configuration']} ({row['seeds']} seeds, mean "
          f"{row['metric']} {row['metric_mean']:.4f}); train it with: seqmnist train --config {args.out}")  # fmt: skip
    return 0


HANDLERS = {"table": table, "plot": plot, "best": best}
