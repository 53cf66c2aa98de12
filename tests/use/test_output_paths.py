"""Places that cannot take the output, and out-of-range counts: one line naming the option.

Each case must exit non-zero with exactly one line on stderr, no traceback,
the option to change named in it, and nothing written, whole or in part.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from unwritable import UNWRITABLE_FOLDERS

from seqmnist.cli import main
from seqmnist.errors import StorageError
from seqmnist.files import atomic_write, check_writable_file, check_writable_folder, make_folder

DIGIT = np.zeros((28, 28), dtype=np.uint8)
DIGIT[6:22, 12:16] = 255


@pytest.fixture
def workspace(tmp_path) -> Path:
    (tmp_path / "a-file").write_text("keep me\n")
    Image.fromarray(DIGIT).save(tmp_path / "digit.png")
    return tmp_path


def place(workspace: Path, where: str) -> str:
    return where if where.startswith("/") else str(workspace / where)


def assert_nothing_left(workspace: Path) -> None:
    """No temporary or probe file anywhere, and the file in the way untouched."""
    assert [path for path in workspace.rglob(".*")] == []
    assert (workspace / "a-file").read_text() == "keep me\n"


@pytest.mark.parametrize("where", UNWRITABLE_FOLDERS.values(), ids=UNWRITABLE_FOLDERS)
def test_an_explain_dir_that_cannot_be_written(where, untrained_run, workspace, one_error_line):
    line = one_error_line(
        ["predict", str(untrained_run()), str(workspace / "digit.png"), "--explain",
         "--explain-dir", place(workspace, where)],
        "--explain-dir",
    )  # fmt: skip
    assert "--out" not in line
    assert_nothing_left(workspace)


def test_an_explain_dir_without_write_permission(untrained_run, workspace, one_error_line):
    if os.geteuid() == 0:
        pytest.skip("root writes into folders whatever their permission bits")
    locked = workspace / "locked"
    locked.mkdir(mode=0o500)
    try:
        line = one_error_line(
            ["predict", str(untrained_run()), str(workspace / "digit.png"), "--explain",
             "--explain-dir", str(locked)],
            "--explain-dir",
        )  # fmt: skip
        assert "writable" in line
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


def test_a_picture_whose_name_is_taken_by_a_folder(untrained_run, workspace, one_error_line):
    (workspace / "pictures" / "digit.steps.png").mkdir(parents=True)
    line = one_error_line(
        ["predict", str(untrained_run()), str(workspace / "digit.png"), "--explain",
         "--explain-dir", str(workspace / "pictures")],
        "--explain-dir",
    )  # fmt: skip
    assert "is a folder" in line
    assert_nothing_left(workspace)


def test_a_bad_explain_dir_is_the_only_error_even_beside_bad_images(
    untrained_run, workspace, one_error_line
):
    one_error_line(
        ["predict", str(untrained_run()), str(workspace / "missing.png"), "--explain",
         "--explain-dir", str(workspace / "a-file")],
        "--explain-dir",
    )  # fmt: skip


def test_a_new_explain_dir_is_created(untrained_run, workspace, capsys):
    pictures = workspace / "new" / "pictures"
    argv = ["predict", str(untrained_run()), str(workspace / "digit.png"), "--explain",
            "--explain-dir", str(pictures)]  # fmt: skip
    assert main(argv) == 0
    assert [path.name for path in pictures.iterdir()] == ["digit.steps.png"]
    assert f"picture: {pictures / 'digit.steps.png'}" in capsys.readouterr().out


EXPORT_TARGETS = {
    "under a file": "a-file/model.onnx",
    "deeper under a file": "a-file/sub/model.onnx",
    "an existing folder": "folder",
    "a folder that takes no files": "/proc/model.onnx",
    "a folder that cannot be made": "/proc/seqmnist-test/model.onnx",
}


@pytest.mark.parametrize("where", EXPORT_TARGETS.values(), ids=EXPORT_TARGETS)
def test_an_export_out_that_cannot_be_written(where, untrained_run, workspace, one_error_line):
    (workspace / "folder").mkdir()
    # The check comes before the dataset is read: this run's dataset is not even here.
    one_error_line(["export", str(untrained_run()), "--out", place(workspace, where)], "--out")
    assert_nothing_left(workspace)
    assert list((workspace / "folder").iterdir()) == []


@pytest.mark.parametrize(
    "top, classes", [(0, 10), (-1, 10), (11, 10), (4, 3)], ids=["0", "-1", "11of10", "4of3"]
)
def test_top_out_of_range(top, classes, untrained_run, workspace, one_error_line):
    run_dir = untrained_run(classes=classes)
    # The count is checked before any image is read: the missing image is not reported.
    argv = ["predict", str(run_dir), str(workspace / "missing.png"), "--top", str(top)]
    line = one_error_line(argv, "--top")
    assert f"between 1 and {classes}" in line and f"got {top}" in line


def test_top_at_the_bounds_and_by_default(untrained_run, workspace, capsys):
    run_dir, image = str(untrained_run(classes=3)), str(workspace / "digit.png")
    for argv, shown in [([], 3), (["--top", "1"], 1), (["--top", "3"], 3)]:
        assert main(["predict", run_dir, image, *argv]) == 0
        ranked = capsys.readouterr().out.rsplit("(", 1)[1]
        assert ranked.count(",") == shown - 1


def test_the_library_checks_name_the_option_given(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageError, match="--explain-dir"):
        make_folder(tmp_path / "a-file" / "sub", "--explain-dir")
    with pytest.raises(StorageError, match="files in /proc.*--elsewhere"):
        check_writable_folder(Path("/proc"), "--elsewhere")
    with pytest.raises(StorageError, match=f"{tmp_path} is a folder.*--out"):
        check_writable_file(tmp_path)
    with pytest.raises(StorageError, match="is a folder, not a file; choose another --x"):
        atomic_write(tmp_path, lambda temp: pytest.fail("nothing may be written"), "--x")
    assert check_writable_folder(tmp_path / "made") == tmp_path / "made"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file", "made"]
