"""`seqmnist data verify` points at the download command that fixes what it found."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from datasets_support import Arrays

from seqmnist.cli import main
from seqmnist.data.sources import TEST_LABELS

if TYPE_CHECKING:
    from conftest import WriteDataset


def test_verify_hint_names_dataset_and_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "verify", "--dataset", "fashion-mnist", "--data-dir", str(empty)]) == 1
    lines = capsys.readouterr().out.splitlines()
    command = shlex.join(
        ["seqmnist", "data", "download", "--dataset", "fashion-mnist", "--data-dir", str(empty)]
    )
    assert lines[-1] == f"some files are missing or damaged: run `{command}` to fetch them again"
    assert len(lines) == 5 and all(f"missing; run `{command}`" in line for line in lines[:4])


def test_verify_hint_for_mnist_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQMNIST_DATA_DIR", str(tmp_path))  # the command needs no --data-dir
    assert main(["data", "verify"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert (
        last
        == "some files are missing or damaged: run `seqmnist data download` to fetch them again"
    )


def test_verify_hint_for_a_folder_dataset(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    write_dataset: WriteDataset,
    tiny_arrays: Arrays,
) -> None:
    folder = write_dataset(tmp_path / "d", *tiny_arrays)
    (folder / f"{TEST_LABELS}.gz").write_bytes(b"garbage")
    assert main(["data", "verify", "--dataset", str(folder)]) == 1
    output = capsys.readouterr().out
    assert "put good copies of them in the dataset folder" in output
    assert "data download" not in output  # a folder has nowhere to download from
