"""`seqmnist predict`: classify a person's own images; --explain shows the reading step by step."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from seqmnist.cli.paths import one_line, path_argument
from seqmnist.cli.startup import PRELOAD
from seqmnist.errors import ConfigError, ImageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify image files (PNG, JPEG, BMP, GIF, WebP) with a trained run",
        description=(
            "Classify pictures of single digits: drawings or photos, dark on light or light "
            "on dark, any size. Each is made MNIST-like first (grayscale, inverted if needed, "
            "cropped to the ink, fitted to 20x20 and centred by mass in 28x28)."
        ),
    )
    parser.add_argument(
        "run_dir", type=path_argument, metavar="RUN", help="run directory written by train"
    )
    parser.add_argument(
        "images", type=path_argument, nargs="+", metavar="IMAGE", help="image files"
    )
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per image"
    )
    parser.add_argument(
        "--top", type=int, metavar="N",
        help="probabilities shown per image, 1 to the run's number of classes "
        "(default: 3, or every class if fewer)",
    )  # fmt: skip
    parser.add_argument(
        "--explain", action="store_true",
        help="show the probabilities after each time step, as a table and a picture",
    )  # fmt: skip
    parser.add_argument(
        "--explain-dir", type=path_argument, default=Path("."), metavar="DIR",
        help="folder for the --explain pictures, IMAGE.steps.png, created if need be "
        "(default: .)",
    )  # fmt: skip
    parser.set_defaults(handler=run, preload=(*PRELOAD, "PIL.Image", "matplotlib.figure"))


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from seqmnist.use import Predictor

    predictor = Predictor.from_run(args.run_dir)
    _check_top(args.top, len(predictor.class_names))
    if args.explain:
        from seqmnist.files import check_writable_folder

        # Before any image is read: a bad folder is then the only error line.
        check_writable_folder(args.explain_dir, "--explain-dir")
    names, images, failures = [], [], 0
    for path in args.images:
        try:
            images.append(predictor.prepare(path))
            names.append(str(path))
        except ImageError as error:
            print(f"seqmnist: error: {one_line(error)}", file=sys.stderr)
            failures += 1
    if images:
        predictions = predictor.classify(np.stack(images), names)
        explanations = _explain(predictor, np.stack(images), names, args) if args.explain else None
        if args.json:
            print(json.dumps(_json_objects(predictions, explanations)))
        else:
            _print_predictions(predictions, explanations, args.top)
    return 2 if failures else 0


def _check_top(top: int | None, classes: int) -> None:
    if top is not None and not 1 <= top <= classes:
        raise ConfigError(
            f"--top must be between 1 and {classes}, the run's number of classes, got {top}"
        )


def _explain(predictor, images, names, args) -> list:
    from seqmnist.plots import steps_figure
    from seqmnist.plots.figures import save_png
    from seqmnist.use.explain import explain

    explanations = explain(predictor.model, images, names, predictor.class_names)
    used: set[str] = set()
    pictures = []
    for explanation in explanations:
        stem = Path(explanation.source).stem
        while stem in used:  # two images of the same name from different folders
            stem += "_"
        used.add(stem)
        figure = steps_figure([explanation])
        pictures.append(save_png(figure, args.explain_dir / f"{stem}.steps.png", "--explain-dir"))
    return list(zip(explanations, pictures, strict=True))


def _json_objects(predictions, explanations) -> list[dict]:
    objects = [prediction.to_dict() for prediction in predictions]
    for entry, (explanation, picture) in zip(objects, explanations or [], strict=False):
        entry["steps"] = explanation.to_dict() | {"picture": str(picture)}
        del entry["steps"]["file"]
    return objects


def _print_predictions(predictions, explanations, top: int | None) -> None:
    for index, prediction in enumerate(predictions):
        shown = prediction.top() if top is None else prediction.top(top)
        ranked = ", ".join(f"{name} {p:.3f}" for name, p in shown)
        print(f"{prediction.source}: {prediction.label}  ({ranked})")
        if explanations:
            explanation, picture = explanations[index]
            print(format_steps_table(explanation))
            print(f"picture: {picture}\n")


def format_steps_table(explanation) -> str:
    """One line per step: the probability of every class, and the leader."""
    names = [name[:5] for name in explanation.class_names]
    width = max(4, *map(len, names))
    step_name = explanation.step_name
    lines = [
        f"probabilities had the image ended after each {step_name}"
        + (" (both directions rerun on each prefix)" if explanation.bidirectional else ""),
        f"{step_name:>6} " + " ".join(f"{name:>{width}}" for name in names) + "  leader",
    ]
    for step, row in zip(explanation.steps, explanation.probabilities, strict=True):
        leader = int(row.argmax())
        cells = " ".join(_cell(p, width) for p in row)
        lines.append(f"{step:>6} {cells}  {explanation.class_names[leader]} {row[leader]:.2f}")
    return "\n".join(lines)


def _cell(probability: float, width: int) -> str:
    # Blank below 0.5% so the leading classes stand out.
    return f"{probability:>{width}.2f}" if probability >= 0.005 else " " * (width - 1) + "."
