"""`seqmnist export`: write a run's model as ONNX, checked against PyTorch before it is kept."""

from __future__ import annotations

import argparse

from seqmnist.cli.paths import path_argument
from seqmnist.cli.startup import PRELOAD


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a trained run to ONNX, verified with onnxruntime",
        description=(
            "Export a run's model. The ONNX graph takes `images`, float32 (batch, height, "
            "width) with pixels in [0, 1], and returns `logits` (batch, classes). The file is "
            "kept only if onnxruntime's logits are within 1e-5 of PyTorch's on test images "
            "at batch sizes 1, 7 and 64."
        ),
    )
    parser.add_argument(
        "run_dir", type=path_argument, metavar="RUN", help="run directory written by train"
    )
    parser.add_argument(
        "--format", choices=("onnx",), default="onnx", help="file format (default: onnx)"
    )
    parser.add_argument("--out", type=path_argument, help="file to write (default: RUN/model.onnx)")
    parser.add_argument(
        "--check-images", type=int, default=1000,
        help="test images the export is checked on (default: 1000)",
    )  # fmt: skip
    parser.add_argument(
        "--data-dir", type=path_argument, help="folder with the dataset files (default: as trained)"
    )
    parser.set_defaults(handler=run, preload=(*PRELOAD, "onnx", "onnxruntime"))


def run(args: argparse.Namespace) -> int:
    from seqmnist.use.export import export_run

    out = args.out or args.run_dir / "model.onnx"
    report = export_run(args.run_dir, out, data_dir=args.data_dir, check_images=args.check_images)
    differences = ", ".join(
        f"batch {batch}: {difference:.1e}" for batch, difference in report.max_abs_diff.items()
    )
    print(f"wrote {report.path} ({report.size_bytes / 1024:.0f} KiB)")
    print(
        f"onnxruntime matches PyTorch on {report.images} test images, max |difference| "
        f"(relative to the largest logit where above 1) {differences}"
    )
    return 0
