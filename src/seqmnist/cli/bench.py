"""`seqmnist bench`: training and inference speed against a typical PyTorch loop."""

from __future__ import annotations

import argparse
import dataclasses
import json

from seqmnist.cli.paths import path_argument, positive_int, seed_list
from seqmnist.config import COMPILE_CHOICES, DEVICES, PRECISIONS
from seqmnist.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure training and inference speed against a plain PyTorch loop",
        # argparse does not %-format a description (help= strings it does): one % here.
        description=(
            "Train a preset's model with seqmnist's trainer and with a typical PyTorch loop "
            "(DataLoader, .to(device), fp32 nn.LSTM, the preset's optimizer, schedule and "
            "clipping), alternating timed windows in one process; report median samples/s, the "
            "ratio, inference throughput and latency. With --to-accuracy, also train the "
            "accuracy preset (default: `default`) with both, one after the other, checking full "
            "test accuracy every --eval-every steps (checks not timed), and report the time each "
            "takes to reach 98.5% and 99.0% test accuracy and how many times sooner seqmnist "
            "gets there."
        ),
    )
    parser.add_argument("--preset", default="ref2-lstm128", help="model and batch to measure")
    parser.add_argument(
        "--cells", nargs="?", const="all", metavar="NAME,NAME,...",
        help="instead, measure every family (or those named) at 28 and 784 steps against "
        "nn.LSTM-128: parameters, training and inference samples/s",
    )  # fmt: skip
    parser.add_argument(
        "--rounds", type=positive_int, default=5,
        help="with --cells: timed windows per model, taken in turns (default: 5)",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=positive_int, help="training steps each (default: the preset's)"
    )
    parser.add_argument(
        "--to-accuracy", action="store_true",
        help="also time seqmnist and the baseline to 98.5%% and 99.0%% test accuracy",
    )  # fmt: skip
    parser.add_argument(
        "--accuracy-preset", action="append", metavar="PRESET|FILE.toml",
        help="recipe for --to-accuracy: a preset or a config file (default: default); give it "
        "again to compare recipes side by side, the first also trained by the baseline",
    )  # fmt: skip
    parser.add_argument(
        "--accuracy-seeds", type=seed_list, metavar="S,S,...",
        help="train every --to-accuracy recipe once per seed, in turns (default: its own seed)",
    )  # fmt: skip
    parser.add_argument(
        "--accuracy-steps", type=positive_int,
        help="steps of the --to-accuracy runs (default: their preset's budget)",
    )  # fmt: skip
    parser.add_argument(
        "--eval-every", type=positive_int, default=50, help="steps between test checks"
    )
    parser.add_argument("--data-dir", type=path_argument, help="folder with the dataset files")
    parser.add_argument("--device", choices=DEVICES, help="default: auto")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: auto")
    parser.add_argument(
        "--compile", choices=COMPILE_CHOICES,
        help="with --cells: training steps through torch.compile (default: auto, where a full "
        "run of the family's preset for the view would be)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=positive_int, help="CPU threads (default: PyTorch's choice)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, help="override the preset's training batch size"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.cells is not None:
        given = [flag for flag, value in (("--preset", args.preset != "ref2-lstm128"),
                 ("--steps", args.steps), ("--to-accuracy", args.to_accuracy)) if value]  # fmt: skip
        if given:
            raise ConfigError(
                f"--cells measures every family at its row preset; {given[0]} does not apply to it"
            )
        result = measure_cells(args)
        print(json.dumps(result) if args.json else format_cells_table(result))
        return 0
    if args.compile is not None:
        raise ConfigError("--compile applies to --cells only; the preset bench trains eagerly")
    result = measure(args)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def measure_cells(args: argparse.Namespace) -> dict:
    """`seqmnist bench --cells`: the per-family table's figures, with the runtime they ran on."""
    from seqmnist.bench.cells import check_cells
    from seqmnist.model.options import CELLS

    names = (
        CELLS if args.cells == "all" else [n.strip() for n in args.cells.split(",") if n.strip()]
    )
    check_cells(names)  # before torch and the data load
    from seqmnist.bench.cells import measure_cells as measure_families
    from seqmnist.bench.run import load_for_bench

    runtime, splits = load_for_bench(
        _overrides(args, ("data_dir", "device", "precision", "threads"))
    )
    speeds = measure_families(
        names, splits, runtime, batch_size=args.batch_size or 128, rounds=args.rounds,
        compile=args.compile or "auto",
    )  # fmt: skip
    return {
        "batch_size": args.batch_size or 128,
        "rounds": args.rounds,
        "compile": args.compile or "auto",
        "cells": [dataclasses.asdict(speed) for speed in speeds],
        **runtime.to_dict(),
    }


def format_cells_table(result: dict) -> str:
    rows: dict[str, dict[str, dict]] = {}
    for speed in result["cells"]:
        rows.setdefault(speed["cell"], {})[speed["view"]] = speed
    reference = rows["lstm"]

    def ratio(speed: dict, key: str) -> str:
        return f"{speed[key] / reference[speed['view']][key]:.2f}x"

    lines = [
        f"device {result['device']} ({result['device_name']}, {result['threads']} threads), "
        f"torch {result['torch_version']}, training precision {result['precision']}, "
        f"batch {result['batch_size']}; CPU flags: {' '.join(result['cpu_flags']) or '-'}",
        f"{'':10}{'params':>8}{'train/s':>10}{'vs LSTM':>9}{'infer/s':>10}{'vs LSTM':>9}"
        f"{'train/s':>10}{'vs LSTM':>9}{'infer/s':>10}{'vs LSTM':>9}",
        f"{'':18}{'--- rows, 28 steps ---':^38}{'--- pixels, 784 steps ---':^38}",
    ]
    for cell, views in rows.items():
        line = f"{cell:10}{views['rows']['params']:>8,}"
        for view in ("rows", "pixels"):
            speed = views[view]
            mark = "*" if speed.get("compiled") else " "
            line += (
                f"{speed['train_samples_per_second']:>9,.0f}{mark}"
                f"{ratio(speed, 'train_samples_per_second'):>9}"
                f"{speed['infer_samples_per_second']:>10,.0f}"
                f"{ratio(speed, 'infer_samples_per_second'):>9}"
            )
        lines.append(line)
    lines.append(
        f"(samples/s, median of {result['rounds']} windows per model taken in turns; params by "
        "rows; training: seqmnist's step with fused AdamW; inference: fp32 forward, batch 1,000)"
    )
    if any(speed.get("compiled") for speed in result["cells"]):
        asked = result.get("compile", "auto")
        why = ": where a full run of the family's preset for the view is" if asked == "auto" else ""
        lines.append(f"* the training step ran through torch.compile (--compile {asked}{why})")
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark the parsed `seqmnist bench` options describe."""
    # Imported here: the benchmark loads torch, which `seqmnist --help` must not.
    from seqmnist.bench.run import run_benchmark

    return run_benchmark(
        args.preset, steps=args.steps, to_accuracy=args.to_accuracy,
        accuracy_presets=tuple(args.accuracy_preset or ("default",)),
        accuracy_seeds=args.accuracy_seeds, accuracy_steps=args.accuracy_steps,
        eval_every=args.eval_every,
        overrides=_overrides(args, ("data_dir", "device", "precision", "threads", "batch_size")),
    )  # fmt: skip


def _overrides(args: argparse.Namespace, names: tuple[str, ...]) -> dict:
    # Counts are positive by their argument type; the config bounds the rest.
    return {name: value for name in names if (value := getattr(args, name)) is not None}


def format_table(result: dict) -> str:
    lines = [
        f"device {result['device']} ({result['device_name']}, {result['threads']} threads), "
        f"torch {result['torch_version']}, precision {result['precision']}",
        f"{'':28}{'samples/s':>12}{'vs baseline':>13}{'test acc':>10}",
        f"{'train seqmnist':28}{result['train_samples_per_second']:>12,.0f}"
        f"{result['train_speedup']:>12.2f}x{result['train_test_accuracy']:>10.4f}",
        f"{'train baseline (PyTorch)':28}{result['baseline_train_samples_per_second']:>12,.0f}"
        f"{1.0:>12.2f}x{result['baseline_test_accuracy']:>10.4f}",
        f"  ({result['preset']}, batch {result['batch_size']}, {result['steps']} steps each, "
        "median of alternating windows; test accuracy after those steps)",
        f"{'inference, batch 1000':28}{result['infer_samples_per_second']:>12,.0f}",
        f"{'latency, batch 1':28}p50 {result['latency_p50_ms']:.2f} ms, "
        f"p99 {result['latency_p99_ms']:.2f} ms",
    ]
    if "seconds_to_98_5" in result:
        lines += _time_to_accuracy_lines(result)
    if "recipes" in result:
        lines += _recipe_lines(result)
    return "\n".join(lines)


def _recipe_lines(result: dict) -> list[str]:
    recipes = result["recipes"]
    seeds = ",".join(map(str, recipes[0]["seeds"]))
    width = max(len("recipe"), *(len(recipe["recipe"]) for recipe in recipes)) + 2
    lines = [
        f"recipes side by side (seeds {seeds}, taken in turns; each trained to its end by "
        "seqmnist's trainer, best-validation weights tested):",
        f"{'recipe':{width}}{'steps':>7}{'test mean':>11}{'test min':>10}{'train s':>9}"
        f"{'vs first':>10}{'to 99.0%':>10}{'reached':>9}",
    ]
    for recipe in recipes:
        to_99 = recipe["seconds_to_99_0_mean"]
        lines.append(
            f"{recipe['recipe']:{width}}{recipe['steps']:>7,}"
            f"{recipe['test_accuracy_mean']:>11.4f}{recipe['test_accuracy_min']:>10.4f}"
            f"{recipe['train_seconds_mean']:>9.1f}{recipe['train_seconds_vs_first']:>9.2f}x"
            f"{'-' if to_99 is None else f'{to_99:.1f} s':>10}"
            f"{recipe['reached_99_0']:>6} of {len(recipe['seeds'])}"
        )
    lines.append(
        "  (train s: the whole run, checks not timed, mean over seeds; to 99.0%: first "
        "checked step at 99.0% test accuracy, mean over the seeds that reached it)"
    )
    return lines


def _time_to_accuracy_lines(result: dict) -> list[str]:
    def seconds(value: float | None) -> str:
        return "not reached" if value is None else f"{value:.1f} s"

    def accuracy(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [
        f"time to test accuracy ({result['accuracy_preset']}, {result['accuracy_steps']} steps "
        f"each, one run after the other; checked every {result['eval_every']} steps, checks "
        "not timed):",
        f"{'':28}{'seqmnist':>12}{'baseline':>12}{'sooner':>9}",
    ]
    for label, key in (("98.5%", "98_5"), ("99.0%", "99_0")):
        ratio = result[f"speedup_to_{key}"]
        lines.append(
            f"{'  to ' + label:28}{seconds(result[f'seconds_to_{key}']):>12}"
            f"{seconds(result[f'baseline_seconds_to_{key}']):>12}"
            f"{'-' if ratio is None else f'{ratio:.2f}x':>9}"
        )
    lines += [
        f"{'  final test accuracy':28}{accuracy(result['test_accuracy']):>12}"
        f"{accuracy(result['baseline_final_test_accuracy']):>12}",
        "  (seqmnist: its best-validation weights; baseline: its last step's)",
        f"  seqmnist from process start: 98.5% "
        f"{seconds(result['seconds_to_98_5_from_process_start'])}, 99.0% "
        f"{seconds(result['seconds_to_99_0_from_process_start'])}",
    ]
    ratio = result["speedup_to_99_0"]
    if ratio is not None and ratio >= 1:
        lines.append(f"seqmnist reaches 99.0% {ratio:.2f} times sooner than the baseline")
    elif ratio is not None:
        lines.append(f"the baseline reaches 99.0% {1 / ratio:.2f} times sooner than seqmnist")
    return lines
