"""seqmnist plot: a bad --out or --examples is one line, before any slow work."""

from pathlib import Path

import pytest
from matplotlib.figure import Figure
from unwritable import UNWRITABLE_FOLDERS

from seqmnist.errors import StorageError
from seqmnist.plots.figures import save_png


@pytest.mark.parametrize("where", UNWRITABLE_FOLDERS.values(), ids=UNWRITABLE_FOLDERS)
def test_a_plot_out_that_cannot_be_written(where, untrained_run, tmp_path, one_error_line):
    (tmp_path / "a-file").write_text("keep me\n")
    out = where if where.startswith("/") else str(tmp_path / where)
    # The untrained run has no metrics or dataset: the folder is checked before either is read.
    one_error_line(["plot", str(untrained_run()), "--out", out], "--out")
    assert list(tmp_path.rglob(".*")) == []
    assert (tmp_path / "a-file").read_text() == "keep me\n"


@pytest.mark.parametrize("examples, classes", [(0, 10), (-2, 10), (11, 10), (4, 3)])
def test_examples_out_of_range(examples, classes, untrained_run, tmp_path, one_error_line):
    run_dir = untrained_run(classes=classes)
    out = tmp_path / "plots"
    line = one_error_line(
        ["plot", str(run_dir), "--out", str(out), "--examples", str(examples)], "--examples"
    )
    assert f"between 1 and {classes}" in line and f"got {examples}" in line
    assert not out.exists()  # checked before the folder is even made


def test_save_png_names_the_option_that_chose_the_place(tmp_path):
    (tmp_path / "a-file").write_text("")
    figure = Figure(figsize=(1, 1))
    with pytest.raises(StorageError, match="a-file is a file.*choose another --explain-dir"):
        save_png(figure, tmp_path / "a-file" / "sub" / "x.png", "--explain-dir")
    with pytest.raises(StorageError, match="choose another --out"):
        save_png(figure, Path("/proc/x.png"))
    path = save_png(figure, tmp_path / "new" / "x.png", "--explain-dir")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a-file", "new", "x.png"]
