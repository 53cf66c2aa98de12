"""`seqmnist data download|verify`: fetch a dataset or check the files in place."""

from __future__ import annotations

import argparse

from seqmnist.cli.paths import path_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data", help="download or verify a dataset", description="Download or verify a dataset."
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))
    for action, help_text in (
        ("download", "download missing or damaged files from the mirrors, verifying each"),
        ("verify", "check every file of a dataset against its checksum"),
    ):
        sub = actions.add_parser(action, help=help_text, description=help_text.capitalize() + ".")
        sub.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist, or a folder")
        sub.add_argument(
            "--data-dir",
            type=path_argument,
            help="folder for the files (default: $SEQMNIST_DATA_DIR, else cache)",
        )
        sub.set_defaults(handler=run, preload=("numpy",))


def run(args: argparse.Namespace) -> int:
    from seqmnist.data import BUILTIN_DATASETS, download_command, download_dataset, verify_dataset

    if args.action == "download":
        directory = download_dataset(args.dataset, args.data_dir)
        print(f"{args.dataset}: all files present and verified in {directory}")
        return 0
    reports = verify_dataset(args.dataset, args.data_dir)
    for report in reports:
        print(f"{'ok ' if report.ok else 'BAD'}  {report.path}  {report.message}")
    if all(report.ok for report in reports):
        return 0
    if args.dataset in BUILTIN_DATASETS:
        command = download_command(args.dataset, args.data_dir)
        print(f"some files are missing or damaged: run `{command}` to fetch them again")
    else:  # a folder dataset: there is nothing to download it from
        print("some files are missing or damaged: put good copies of them in the dataset folder")
    return 1
