"""A run folder is never destroyed: train refuses one that holds anything, unless told to start over."""

import os
import subprocess
from pathlib import Path

import pytest
from support import sha256, tiny_config

from seqmnist.cli import main
from seqmnist.errors import RunError
from seqmnist.training import train

REPO = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def train_argv(stripes_dir, out, *extra):
    return [
        "train", "--dataset", str(stripes_dir), "--validation-size", "100", "--hidden-sizes", "8",
        "--steps", "6", "--batch-size", "32", "--device", "cpu", "--no-progress", "--out", str(out),
        *extra,
    ]  # fmt: skip


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_finished_run_is_refused_and_left_exactly_as_it_was(stripes_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=8), run_dir, progress=False)
    before = snapshot(run_dir)
    assert main(train_argv(stripes_dir, run_dir)) == 2
    line = one_error_line(capsys)
    assert "holds a finished run" in line and "--overwrite" in line
    assert f"seqmnist eval {run_dir}" in line
    assert snapshot(run_dir) == before


def test_a_stopped_run_is_refused_with_the_resume_command(stripes_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=8), run_dir, progress=False)
    (run_dir / "summary.json").unlink()  # as if it had stopped after its last checkpoint
    (run_dir / "model.safetensors").unlink()
    before = snapshot(run_dir)
    assert main(train_argv(stripes_dir, run_dir)) == 2
    line = one_error_line(capsys)
    assert f"seqmnist train --resume {run_dir}" in line and "--overwrite" in line
    assert snapshot(run_dir) == before
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0


def test_overwrite_starts_over_and_leaves_the_users_own_files(stripes_dir, tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=8), run_dir, progress=False)
    (run_dir / "notes.txt").write_text("mine")
    assert main(train_argv(stripes_dir, run_dir, "--overwrite")) == 0
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1].startswith(
        "step-00000006"
    )


def test_a_folder_that_is_not_a_run_is_refused_even_with_overwrite(stripes_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not ours")
    for extra in ((), ("--overwrite",)):
        assert main(train_argv(stripes_dir, folder, *extra)) == 2
        assert "not a seqmnist run" in one_error_line(capsys)
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]


@pytest.mark.parametrize("out", ["", " "])
def test_an_empty_out_is_refused(stripes_dir, tmp_path, capsys, out, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(train_argv(stripes_dir, out))
    assert exit_info.value.code == 2
    assert "empty path" in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunError, match="empty path"):
        train(tiny_config(stripes_dir), "", progress=False)


def test_a_file_as_out_or_resume_is_refused(stripes_dir, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("x")
    assert main(train_argv(stripes_dir, file)) == 2
    assert "is a file" in one_error_line(capsys)
    assert main(["train", "--resume", str(file)]) == 2
    assert "is a file" in one_error_line(capsys)
    assert file.read_text() == "x"


def test_make_train_a_second_time_reports_the_run_and_deletes_nothing(stripes_dir, tmp_path):
    if not (REPO / ".venv" / "bin" / "seqmnist").exists():
        pytest.skip("make train needs the project's .venv (make setup)")
    run_dir = tmp_path / "run"
    train(tiny_config(stripes_dir, steps=8), run_dir, progress=False)
    before = snapshot(run_dir)
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "train", f"RUN={run_dir}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MAKEFLAGS": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "trained already" in done.stdout and "--overwrite" in done.stdout
    assert snapshot(run_dir) == before
