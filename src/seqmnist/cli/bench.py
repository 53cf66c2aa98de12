"""`seqmnist bench`: training and inference speed against a typical PyTorch loop."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure training and inference speed against a plain PyTorch loop",
        description=(
            "Train a preset's model with seqmnist's trainer and with a typical PyTorch loop "
            "(DataLoader, .to(device), fp32 nn.LSTM, Adam), alternating timed windows in one "
            "process; report median samples/s, the ratio, inference throughput and latency, "
            "and with --to-accuracy the time the default preset takes to reach 98.5%% and 99.0%% "
            "test accuracy."
        ),
    )
    parser.add_argument("--preset", default="ref2-lstm128", help="model and batch to measure")
    parser.add_argument("--steps", type=int, help="training steps each (default: the preset's)")
    parser.add_argument("--to-accuracy", action="store_true", help="also time to 98.5%%/99.0%%")
    parser.add_argument("--accuracy-preset", default="default", help="preset for --to-accuracy")
    parser.add_argument("--accuracy-steps", type=int, help="cap the --to-accuracy run's steps")
    parser.add_argument("--eval-every", type=int, default=50, help="steps between test checks")
    parser.add_argument("--data-dir", help="folder with the dataset files")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="default: auto")
    parser.add_argument("--batch-size", help="override the preset's batch size")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    result = measure(args)
    print(json.dumps(result) if args.json else format_table(result))
    return 0


def measure(args: argparse.Namespace) -> dict:
    """Run the benchmark the parsed `seqmnist bench` options describe."""
    from seqmnist.bench.run import run_benchmark
    from seqmnist.errors import ConfigError

    for option in ("steps", "accuracy_steps", "eval_every"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            flag = "--" + option.replace("_", "-")
            raise ConfigError(f"{flag} must be positive, got {value}")
    overrides = {
        name: value
        for name in ("data_dir", "device", "precision", "batch_size")
        if (value := getattr(args, name)) is not None
    }
    return run_benchmark(
        args.preset, steps=args.steps, to_accuracy=args.to_accuracy,
        accuracy_preset=args.accuracy_preset, accuracy_steps=args.accuracy_steps,
        eval_every=args.eval_every, overrides=overrides,
    )  # fmt: skip


def format_table(result: dict) -> str:
    def seconds(value):
        return "not reached" if value is None else f"{value:.1f} s"

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
        lines.append(
            f"time to accuracy ({result['accuracy_preset']}, final test accuracy "
            f"{result['test_accuracy']:.4f}):"
        )
        for label, key in (("98.5%", "seconds_to_98_5"), ("99.0%", "seconds_to_99_0")):
            lines.append(
                f"  {label}: {seconds(result[key])} of training, "
                f"{seconds(result[key + '_from_process_start'])} from process start"
            )
    return "\n".join(lines)
