"""Hostile arguments to every command: exit 0, or a non-zero exit and one clean line.

Every command is driven with what a person or a script gets wrong: files where
folders belong and the reverse, paths under a file, missing paths, /proc (it takes
no new files, even from root), /dev/null and a named pipe, empty and blank strings,
huge, negative, zero and non-finite numbers, non-numbers, unknown choices, very
long and odd unicode text. Hypothesis generates the numbers and words of the
numeric and choice options.

The property, for every case: a value that is wrong gives a non-zero exit with
exactly one non-empty line on stderr and no traceback, before any real work; a
value that happens to be valid may succeed (exit 0). Every run gets a tiny dataset
and budget, so a success is quick, and values that would make a valid run long
(a million steps) are left out rather than run.

Commands run in-process through ``main`` for speed, with stdout and stderr set up
as the interpreter sets them for a UTF-8 terminal and the library's log lines sent
to stderr as the CLI sends them; a few run in a real process as a smoke check.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from seqmnist.cli import COMMANDS, main
from seqmnist.config import (
    MAX_EPOCHS,
    MAX_LAYER_WIDTH,
    MAX_STEPS,
    MAX_THREADS,
    option_fields,
    parse_value,
)
from seqmnist.errors import ConfigError
from seqmnist.presets import PRESETS

HYPOTHESIS = settings(
    max_examples=20,
    deadline=None,
    # The fixtures are set up once per test and shared by its examples on purpose:
    # each example writes only into a fresh folder of its own.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

LONG = "x" * 5000
# Right-to-left override, a combining accent, an emoji, and the lone surrogate
# Python makes of a byte that is not UTF-8 in a command line.
ODD = "\u202e\u0301\U0001f600\udcff"

# Settings that keep a run that does start down to a fraction of a second.
TINY = [
    "--validation-size", "100", "--hidden-sizes", "8", "--batch-size", "32",
    "--eval-batch-size", "64", "--device", "cpu", "--precision", "fp32", "--threads", "1",
    "--log-every", "50", "--checkpoint-every", "0", "--no-progress",
]  # fmt: skip
BUDGETS = ("--steps", "--epochs", "--samples")


# --- running the CLI --------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"argv={list(self.argv)!r}\nexit={self.code}\nstderr:\n{self.err}"


def _stream(errors: str) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    return stream.buffer.getvalue().decode("utf-8", "replace")


def run_cli(*argv: str) -> Outcome:
    """``seqmnist ARGV`` in this process; an exception escaping ``main`` fails the test.

    The streams take what a terminal's would: in a UTF-8 locale Python writes stdout
    with surrogateescape and stderr with backslashreplace, so a path holding a byte
    that is not UTF-8 prints as it does for a user (capsys would refuse it).
    """
    out, err = _stream("surrogateescape"), _stream("backslashreplace")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse: usage errors
            code = stop.code
    return Outcome(tuple(argv), 0 if code is None else code, _text(out), _text(err))


def assert_refused(outcome: Outcome, *words: str) -> str:
    """A non-zero exit, no traceback, one non-empty stderr line from seqmnist; returns it."""
    assert outcome.code != 0, f"a bad value was accepted\n{outcome}"
    assert "Traceback" not in outcome.err, str(outcome)
    assert len(outcome.err_lines) == 1, f"not one error line\n{outcome}"
    line = outcome.err_lines[0]
    assert line.startswith("seqmnist"), str(outcome)
    for word in words:
        assert word in line, f"{word!r} not in the error\n{outcome}"
    return line


def assert_report(outcome: Outcome) -> None:
    """data verify's answer for files that are missing: a report on stdout, exit 1."""
    assert outcome.code == 1 and outcome.err_lines == [], str(outcome)
    assert "BAD" in outcome.out and "missing" in outcome.out, outcome.out


def assert_clean(outcome: Outcome) -> None:
    """Exit 0 without a traceback, or refused as ``assert_refused`` says."""
    if outcome.code == 0:
        assert "Traceback" not in outcome.err, str(outcome)
    else:
        assert_refused(outcome)


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, as the CLI's handler would."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; ignored
        pass


@pytest.fixture(autouse=True)
def _cli_surroundings(tmp_path, monkeypatch):
    """Log lines on stderr, and a working folder of the test's own.

    ``main`` calls logging.basicConfig, which does nothing under pytest (its own
    handlers are already on the root logger), so the handler the CLI would get is
    added here: a command that logs before failing then shows more than one line.
    Relative paths (and "" taken as ".") land in the test's folder, not the checkout.
    """
    monkeypatch.chdir(tmp_path)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield
    root.removeHandler(handler)
    root.setLevel(previous_level)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    yield


def is_folder(path: str) -> bool:
    """Path.is_dir, but False where the name itself is refused (too long, say)."""
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def fresh_folder(tmp_path: Path) -> Path:
    """A new empty folder, one per hypothesis example."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


# --- the places and runs the commands are given --------------------------------------


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Hostile paths by name. Only ever read, or refused before anything is written."""
    root = tmp_path_factory.mktemp("places")
    (root / "a-file").write_text("not what anything expects\n")
    (root / "empty-folder").mkdir()
    (root / "user-folder").mkdir()
    (root / "user-folder" / "notes.txt").write_text("the user's own\n")
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 8)
    os.mkfifo(root / "a-pipe")
    return {
        "a file": str(root / "a-file"),
        "a path under a file": str(root / "a-file" / "sub"),
        "a missing path": str(root / "missing" / "deeper"),
        "/proc": "/proc",
        "/proc/x": "/proc/seqmnist-hostile",
        "/dev/null": "/dev/null",
        "a pipe": str(root / "a-pipe"),
        "an empty folder": str(root / "empty-folder"),
        "a folder of other files": str(root / "user-folder"),
        "binary garbage": str(root / "garbage.bin"),
        "empty": "",
        "blank": " ",
        "a tab": "\t",
        "a very long name": str(root / LONG),
        "odd unicode": str(root / ODD),
    }


EVERY_PLACE = (
    "a file", "a path under a file", "a missing path", "/proc", "/proc/x", "/dev/null",
    "a pipe", "an empty folder", "a folder of other files", "binary garbage", "empty",
    "blank", "a tab", "a very long name", "odd unicode",
)  # fmt: skip
# Where a folder to write into is asked for, these can never be it.
NOT_A_WRITABLE_FOLDER = (
    "a file", "a path under a file", "/proc", "/proc/x", "/dev/null", "a pipe",
    "binary garbage", "empty", "blank", "a tab", "a very long name",
)  # fmt: skip
# Where a run folder is asked for, none of these is one.
NOT_A_RUN = EVERY_PLACE
# A --data-dir for a built-in dataset that cannot hold its files; each must fail
# before the network is tried (a missing folder would be created and downloaded into).
NOT_A_DATA_FOLDER = ("a file", "a path under a file", "/proc", "/proc/x", "/dev/null", "a pipe")


def _mnist_digit() -> np.ndarray:
    image = np.full((28, 28), 255, np.uint8)
    image[5:22, 12:16] = 0  # a dark "1" on white paper
    return image


@pytest.fixture(scope="module")
def finished_run(stripes_dir, tmp_path_factory) -> Path:
    """A run trained for two steps on the 6x5, 3-class stripes: everything a run holds."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    outcome = run_cli("train", "--dataset", str(stripes_dir), *TINY, "--steps", "2",
                      "--out", str(run_dir))  # fmt: skip
    assert outcome.code == 0, str(outcome)
    return run_dir


@pytest.fixture(scope="module")
def mnist_named_run(finished_run, tmp_path_factory) -> Path:
    """The finished run, its config naming the built-in mnist: --data-dir then matters."""
    run_dir = tmp_path_factory.mktemp("mnist-named") / "run"
    shutil.copytree(finished_run, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    config["data"]["dataset"] = "mnist"
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "digit.png"
    Image.fromarray(_mnist_digit()).save(path)
    return path


def train_argv(stripes_dir: Path, out: Path | str, *extra: str, budget: bool = True) -> list[str]:
    """A tiny training run on the stripes; later options (``extra``) replace earlier ones."""
    steps = ["--steps", "2"] if budget else []
    return ["train", "--dataset", str(stripes_dir), *TINY, *steps, "--out", str(out), *extra]


# --- hypothesis strategies ----------------------------------------------------------

HOSTILE_NUMBERS = [
    "2**64", str(2**64), str(10**30), "99999999999", str(-(2**64)), "-1", "0", "-0", "0.0",
    "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", "abc", "", " ", "\t", "0x10",
    "1,5", "1.5.1", "½", "\u0663", "+3", "1_0", "9" * 5000, "\u202e1", "none", "true",
    "3.5e38",  # finite, but past float32: a forget bias of it cannot be stored
    LONG, ODD,
]  # fmt: skip

number_text = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=2**64), min_size=1, max_size=4).map(
        lambda sizes: ",".join(map(str, sizes))
    ),
)

word_text = st.one_of(
    # "~0": expanding the home folder of a user who does not exist raises RuntimeError.
    st.sampled_from(["", " ", "\t", "LSTM", "lstm ", " lstm", "nope", "none", "~0", LONG, ODD]),
    st.text(max_size=16),
)

TRAIN_NUMBER_OPTIONS = (
    "--lr", "--epochs", "--steps", "--samples", "--batch-size", "--hidden-sizes", "--seed",
    "--permutation-seed", "--dropout", "--validation-size", "--eval-batch-size", "--threads",
    "--weight-decay", "--momentum", "--warmup-fraction", "--grad-clip", "--lstm-forget-bias",
    "--log-every", "--checkpoint-every",
)  # fmt: skip
TRAIN_CHOICE_OPTIONS = (
    "--cell", "--view", "--readout", "--optimizer", "--schedule", "--device", "--precision",
    "--head-init",
)  # fmt: skip

# Valid values that would make a tiny run slow: more than a few steps, wide or deep
# models, more threads than this machine's two cores.
COSTLY = {
    "steps": lambda steps: 3 < steps <= MAX_STEPS,
    "samples": lambda samples: 96 < samples <= MAX_STEPS * 32,  # over 3 batches of 32
    "epochs": lambda epochs: 0.2 < epochs <= MAX_EPOCHS,  # 15 steps an epoch
    "hidden_sizes": lambda sizes: len(sizes) > 3 or any(64 < size <= MAX_LAYER_WIDTH for size in sizes),
    "threads": lambda threads: 2 < threads <= MAX_THREADS,
}  # fmt: skip


def too_costly(option: str, text: str) -> bool:
    """Whether ``text`` is a valid value of ``option`` that would make a long run."""
    name = option[2:].replace("-", "_")
    section = option_fields()[name][0]
    try:
        value = parse_value(section, name, text)
    except ConfigError:
        return False  # refused: exactly what is being tested
    costly = COSTLY.get(name)
    return value is not None and costly is not None and costly(value)


# --- train ------------------------------------------------------------------------


@given(option=st.sampled_from(TRAIN_NUMBER_OPTIONS), value=number_text)
@HYPOTHESIS
def test_train_numbers(option, value, stripes_dir, tmp_path):
    assume(not too_costly(option, value))
    out = fresh_folder(tmp_path) / "run"
    # OPTION=VALUE, so that a value such as "-1" or "--x" is taken as the value.
    argv = train_argv(stripes_dir, out, f"{option}={value}", budget=option not in BUDGETS)
    outcome = run_cli(*argv)
    assert_clean(outcome)
    if outcome.code != 0 and "training" not in outcome.out:
        assert not out.exists(), "refused, yet the run folder was made"


@pytest.mark.parametrize(
    "extra",
    [
        ("--lstm-forget-bias", "3.5e38"),  # was a RuntimeError writing the bias into float32
        ("--lstm-forget-bias", "-1e300"),
        ("--dataset", "~0"),  # was a RuntimeError: no home folder for user "0"
        ("--dataset", "~no-such-user/digits"),
        ("--config", "~0/run.toml"),
    ],
    ids=" ".join,
)
def test_train_values_hypothesis_found(extra, stripes_dir, tmp_path):
    assert_refused(run_cli(*train_argv(stripes_dir, tmp_path / "run", *extra)))
    assert not (tmp_path / "run").exists()


@given(option=st.sampled_from(TRAIN_CHOICE_OPTIONS), value=word_text)
@HYPOTHESIS
def test_train_choices(option, value, stripes_dir, tmp_path):
    outcome = run_cli(*train_argv(stripes_dir, fresh_folder(tmp_path) / "run", f"{option}={value}"))
    assert_clean(outcome)


@given(preset=st.one_of(word_text, st.sampled_from(list(PRESETS))))
@HYPOTHESIS
def test_train_presets(preset, stripes_dir, tmp_path):
    assume(preset != "")  # see test_train_empty_preset_is_refused
    outcome = run_cli(
        *train_argv(stripes_dir, fresh_folder(tmp_path) / "run", f"--preset={preset}")
    )
    assert_clean(outcome)
    if preset not in PRESETS:
        assert_refused(outcome, "preset")


def test_train_empty_preset_is_refused(stripes_dir, tmp_path):
    assert_refused(run_cli(*train_argv(stripes_dir, tmp_path / "run", "--preset=")), "preset")


# runs.py check_new_run_dir only looks at what exists, so these pass it and fail
# later, when train() makes the folder: after the data is loaded.
OUT_REFUSED_LATE = ("a path under a file", "/proc/x")


@pytest.mark.parametrize("where", NOT_A_WRITABLE_FOLDER + ("a folder of other files",))
def test_train_out_that_cannot_be_a_run_folder(where, places, stripes_dir):
    outcome = run_cli(*train_argv(stripes_dir, places[where]))
    assert_refused(outcome)
    if where not in OUT_REFUSED_LATE:
        assert "training" not in outcome.out  # refused before the data is read


@pytest.mark.parametrize("where", OUT_REFUSED_LATE)
def test_train_out_refused_before_the_data_is_read(where, places, stripes_dir):
    outcome = run_cli(*train_argv(stripes_dir, places[where]))
    assert_refused(outcome)
    assert "training" not in outcome.out


@pytest.mark.parametrize("where", ["a missing path", "an empty folder", "odd unicode"])
def test_train_out_that_is_a_fine_new_folder(where, places, stripes_dir, tmp_path):
    target = Path(tempfile.mkdtemp(dir=tmp_path)) / Path(places[where]).name
    if where == "an empty folder":
        target.mkdir()
    assert run_cli(*train_argv(stripes_dir, target)).code == 0
    assert (target / "summary.json").is_file()


@pytest.mark.parametrize(
    "where",
    # /dev/null is an empty TOML file, which is valid; a pipe would block the read.
    [p for p in EVERY_PLACE if p not in ("/dev/null", "a pipe")],
)
def test_train_config_that_is_not_a_toml_file(where, places, stripes_dir, tmp_path):
    assert_refused(run_cli(*train_argv(stripes_dir, tmp_path / "run", "--config", places[where])))
    assert not (tmp_path / "run").exists()


def test_train_config_of_dev_null_is_an_empty_config(stripes_dir, tmp_path):
    assert run_cli(*train_argv(stripes_dir, tmp_path / "run", "--config", "/dev/null")).code == 0


@pytest.mark.parametrize(
    "toml",
    [
        "[model]\nhidden_sizes = [1e400]", "[model]\nhidden_sizes = [1.5]",
        "[model]\nhidden_sizes = [true]", "[model]\nhidden_sizes = [[8]]",
        "[model]\nhidden_sizes = {a = 1}", "[model]\nhidden_sizes = 1979-05-27",
        "[model]\nhidden_sizes = []", "[model]\nhidden_sizes = [-9223372036854775809]",
        "[train]\nsteps = true", "[train]\nsteps = inf", "[train]\nsteps = nan",
        "[train]\nsteps = 2.5", "[train]\nsteps = 18446744073709551616", "[train]\nlr = nan",
        "[train]\nlr = inf", "[train]\nseed = 1e300", "[data]\nvalidation_size = 10e400",
        "[model]\nbidirectional = 2", "[model]\nbidirectional = 'maybe'", "data = 5",
        "name = {a = 1}\n[train]\nfrob = 1", "x = 1", "[frob]", "= =",
    ],
)  # fmt: skip
def test_train_config_with_hostile_values(toml, stripes_dir, tmp_path):
    config = tmp_path / "hostile.toml"
    config.write_text(toml)
    argv = train_argv(stripes_dir, tmp_path / "run", "--config", str(config), budget=False)
    assert_refused(run_cli(*argv))


@pytest.mark.parametrize(
    "text",
    ["[]", "null", '"x"', "5", "{", '{"train": 5}', '{"model": {"hidden_sizes": [1e400]}}',
     '{"train": {"steps": true}}', '{"model": {"hidden_sizes": "8,,8"}}', '{"frob": {}}'],
)  # fmt: skip
def test_train_config_json_with_hostile_values(text, stripes_dir, tmp_path):
    config = tmp_path / "config.json"  # a run's config.json is read as a config too
    config.write_text(text)
    argv = train_argv(stripes_dir, tmp_path / "run", "--config", str(config), budget=False)
    assert_refused(run_cli(*argv))


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_train_resume_of_what_is_not_a_run(where, places):
    assert_refused(run_cli("train", "--resume", places[where], "--no-progress"))


@pytest.mark.parametrize("where", EVERY_PLACE)
def test_train_dataset_that_is_not_a_dataset(where, places, stripes_dir, tmp_path):
    argv = train_argv(stripes_dir, tmp_path / "run", "--dataset", places[where])
    assert_refused(run_cli(*argv))
    assert not (tmp_path / "run").exists()


@given(dataset=word_text)
@HYPOTHESIS
def test_train_dataset_names(dataset, stripes_dir, tmp_path):
    assume(dataset.strip() not in ("mnist", "fashion-mnist"))  # would read the real files
    out = fresh_folder(tmp_path) / "run"
    assert_refused(run_cli(*train_argv(stripes_dir, out, f"--dataset={dataset}")))


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER)
def test_train_data_dir_that_cannot_hold_mnist(where, places, stripes_dir, tmp_path):
    argv = train_argv(
        stripes_dir, tmp_path / "run", "--dataset", "mnist", "--data-dir", places[where]
    )
    assert_refused(run_cli(*argv), "--data-dir")
    assert not (tmp_path / "run").exists()


# --- eval ------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_eval_of_what_is_not_a_run(where, places):
    assert_refused(run_cli("eval", places[where]))


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER + ("empty", "blank"))
def test_eval_data_dir_that_cannot_hold_mnist(where, places, mnist_named_run):
    assert_refused(run_cli("eval", str(mnist_named_run), "--data-dir", places[where]))


@given(option=st.sampled_from(["--split", "--device"]), value=word_text)
@HYPOTHESIS
def test_eval_choices(option, value, finished_run):
    assert_clean(run_cli("eval", str(finished_run), f"{option}={value}"))


# --- predict -------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_predict_with_what_is_not_a_run(where, places, digit_png):
    assert_refused(run_cli("predict", places[where], str(digit_png)))


@pytest.mark.parametrize("where", EVERY_PLACE)
def test_predict_an_image_that_is_not_one(where, places, finished_run):
    assert_refused(run_cli("predict", str(finished_run), places[where]))


@given(top=number_text)
@HYPOTHESIS
def test_predict_top(top, finished_run, digit_png):
    outcome = run_cli("predict", str(finished_run), str(digit_png), f"--top={top}")
    assert_clean(outcome)


@pytest.mark.parametrize("where", NOT_A_WRITABLE_FOLDER)
def test_predict_explain_dir_that_cannot_be_written(where, places, finished_run, digit_png):
    argv = [
        "predict",
        str(finished_run),
        str(digit_png),
        "--explain",
        "--explain-dir",
        places[where],
    ]
    outcome = run_cli(*argv)
    assert_refused(outcome)
    assert outcome.out == ""  # refused before any image was classified


# --- export --------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_export_of_what_is_not_a_run(where, places, tmp_path):
    assert_refused(run_cli("export", places[where], "--out", str(tmp_path / "m.onnx")))


@pytest.mark.parametrize(
    "where",
    # Never /dev/null: a regular file renamed over it replaces the device for the
    # whole machine when run as root. The pipe stands for every special file.
    ["a path under a file", "/proc", "/proc/x", "a pipe", "an empty folder",
     "a folder of other files", "empty", "blank", "a tab", "a very long name"],
)  # fmt: skip
def test_export_out_that_cannot_be_written(where, places, finished_run):
    assert_refused(
        run_cli("export", str(finished_run), "--out", places[where], "--check-images", "3")
    )
    assert Path(places["a pipe"]).is_fifo()


@given(check_images=number_text)
@HYPOTHESIS
def test_export_check_images(check_images, finished_run, places):
    # An --out that cannot be written: a count that is accepted meets that refusal
    # next, so no example does the (slow) export, and the order of the checks shows.
    argv = [
        "export",
        str(finished_run),
        f"--check-images={check_images}",
        "--out",
        places["/proc/x"],
    ]
    line = assert_refused(run_cli(*argv))
    try:
        valid = int(check_images) >= 1
    except ValueError:
        valid = False
    assert ("--out" in line) == valid, line


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER + ("empty", "blank"))
def test_export_data_dir_that_cannot_hold_mnist(where, places, mnist_named_run, tmp_path):
    argv = [
        "export",
        str(mnist_named_run),
        "--out",
        str(tmp_path / "m.onnx"),
        "--data-dir",
        places[where],
    ]
    assert_refused(run_cli(*argv))
    assert not (tmp_path / "m.onnx").exists()


@given(value=word_text)
@HYPOTHESIS
def test_export_format(value, finished_run, places):
    argv = ["export", str(finished_run), f"--format={value}", "--out", places["/proc/x"]]
    assert_refused(run_cli(*argv))  # onnx or not, the --out refuses it


# --- plot ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_plot_of_what_is_not_a_run(where, places, tmp_path):
    assert_refused(run_cli("plot", places[where], "--out", str(tmp_path / "plots")))


@pytest.mark.parametrize("where", NOT_A_WRITABLE_FOLDER)
def test_plot_out_that_cannot_be_written(where, places, finished_run):
    assert_refused(run_cli("plot", str(finished_run), "--out", places[where]), "--out")


@given(examples=number_text)
@HYPOTHESIS
def test_plot_examples(examples, finished_run, places):
    # As for export: an accepted count meets the unwritable --out next.
    argv = ["plot", str(finished_run), f"--examples={examples}", "--out", places["/proc/x"]]
    line = assert_refused(run_cli(*argv))
    try:
        valid = 1 <= int(examples) <= 3  # the stripes have 3 classes
    except ValueError:
        valid = False
    assert ("--out" in line) == valid, line


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER + ("empty", "blank"))
def test_plot_data_dir_that_cannot_hold_mnist(where, places, mnist_named_run, tmp_path):
    out = tmp_path / "plots"
    assert_refused(
        run_cli("plot", str(mnist_named_run), "--out", str(out), "--data-dir", places[where])
    )
    assert not out.exists() or not any(out.iterdir())


# --- compare ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_RUN)
def test_compare_with_what_is_not_a_run(where, places, finished_run):
    assert_refused(run_cli("compare", places[where]))
    assert_refused(run_cli("compare", str(finished_run), places[where], "--json"))


DAMAGED_FILES = {
    "config.json is a list": {"config.json": "[]"},
    "config.json is null": {"config.json": "null"},
    "config.json is a string": {"config.json": '"x"'},
    "config.json is a number": {"config.json": "5"},
    "config.json has a number for a section": {"config.json": '{"train": 5}'},
    "config.json is a folder": {"config.json": None},
    "summary.json figures are not numbers": {
        "summary.json": '{"test_accuracy": "x", "train_seconds": [1], "params": true}'
    },
    "summary.json is a folder": {"summary.json": None},
    "model.safetensors is a folder": {"model.safetensors": None},
    "model.safetensors is empty": {"model.safetensors": ""},
}
# runs.py weights_damage: `((summary or {}).get("checksums") or {}).get(...)` assumes dicts.
SUMMARY_NOT_A_TABLE = {
    "summary.json is a list": {"summary.json": "[1]"},
    "summary.json is a string": {"summary.json": '"x"'},
    "summary.json is a number": {"summary.json": "5"},
    "summary.json checksums is a number": {"summary.json": '{"checksums": 5}'},
}


def damaged_copy(finished_run: Path, tmp_path: Path, files: dict[str, str | None]) -> Path:
    run_dir = fresh_folder(tmp_path) / "run"
    shutil.copytree(finished_run, run_dir)
    for name, content in files.items():
        path = run_dir / name
        path.unlink()
        if content is None:
            path.mkdir()
        else:
            path.write_text(content)
    return run_dir


def every_reader(run_dir: Path, digit_png: Path, unwritable: str) -> list[list[str]]:
    """Each command that loads a run; export and plot write nowhere even if it loads."""
    return [
        ["eval", str(run_dir)],
        ["predict", str(run_dir), str(digit_png)],
        ["export", str(run_dir), "--out", unwritable, "--check-images", "3"],
        ["plot", str(run_dir), "--out", unwritable],
        ["compare", str(run_dir)],
    ]


@pytest.mark.parametrize("files", DAMAGED_FILES.values(), ids=DAMAGED_FILES)
def test_damaged_run_folders(files, finished_run, digit_png, places, tmp_path):
    run_dir = damaged_copy(finished_run, tmp_path, files)
    for argv in every_reader(run_dir, digit_png, places["/proc/x"]):
        outcome = run_cli(*argv)
        # Figures that are not numbers only trouble compare, which shows them.
        if argv[0] == "compare" or files.get("summary.json") is None:
            assert_refused(outcome)
        else:
            assert_clean(outcome)


@pytest.mark.parametrize("files", SUMMARY_NOT_A_TABLE.values(), ids=SUMMARY_NOT_A_TABLE)
def test_summary_that_is_not_a_table(files, finished_run, tmp_path):
    run_dir = damaged_copy(finished_run, tmp_path, files)
    assert_refused(run_cli("eval", str(run_dir)))


# --- presets ---------------------------------------------------------------------------


@given(name=word_text, as_json=st.booleans())
@HYPOTHESIS
def test_presets_names(name, as_json):
    # After "--", a name such as "-x" is taken as the name.
    outcome = run_cli("presets", *(["--json"] if as_json else []), "--", name)
    if name in PRESETS:
        assert outcome.code == 0, str(outcome)
    else:
        assert_refused(outcome, "preset")


# --- data ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER + ("empty", "blank"))
@pytest.mark.parametrize("action", ["download", "verify"])
def test_data_dir_that_cannot_hold_mnist(action, where, places):
    outcome = run_cli("data", action, "--data-dir", places[where])
    if action == "verify" and where in ("/proc", "/proc/x"):
        # verify only reads: the files are missing there, as its report says; it is the
        # download it suggests that refuses the folder (the case above).
        assert_report(outcome)
    else:
        assert_refused(outcome)


@pytest.mark.parametrize("where", EVERY_PLACE)
def test_data_download_of_what_is_not_a_builtin(where, places):
    # A folder dataset has nothing to download, and anything else is not a dataset.
    assert_refused(run_cli("data", "download", "--dataset", places[where]))


@pytest.mark.parametrize("where", EVERY_PLACE)
def test_data_verify_of_what_is_not_a_dataset(where, places):
    outcome = run_cli("data", "verify", "--dataset", places[where])
    if places[where].strip() and is_folder(places[where]):
        assert_report(outcome)  # a folder is a folder dataset, here without its files
    else:
        assert_refused(outcome)


@given(action=st.sampled_from(["download", "verify"]), dataset=word_text)
@HYPOTHESIS
def test_data_dataset_names(action, dataset):
    assume(dataset not in ("mnist", "fashion-mnist"))
    assume(not is_folder(dataset))  # a folder such as "." is a folder dataset
    assert_refused(run_cli("data", action, f"--dataset={dataset}"))


# --- bench -----------------------------------------------------------------------------


@given(
    option=st.sampled_from(["--steps", "--accuracy-steps", "--eval-every", "--threads", "--batch-size"]),
    value=number_text,
)  # fmt: skip
@HYPOTHESIS
def test_bench_numbers(option, value, places):
    # The data folder is a file: a number that is accepted meets that refusal next,
    # before anything is measured.
    argv = ["bench", "--to-accuracy", f"{option}={value}", "--device", "cpu",
            "--data-dir", places["a file"]]  # fmt: skip
    assert_refused(run_cli(*argv))


@given(
    option=st.sampled_from(["--preset", "--accuracy-preset", "--device", "--precision"]),
    value=st.one_of(word_text, st.sampled_from(list(PRESETS))),
)
@HYPOTHESIS
def test_bench_words(option, value, places):
    argv = ["bench", "--to-accuracy", f"{option}={value}", "--device", "cpu",
            "--data-dir", places["a file"]]  # fmt: skip
    if option == "--device":  # the last --device wins: keep the one under test last
        argv += [f"--device={value}"]
    assert_refused(run_cli(*argv))


@pytest.mark.parametrize("where", NOT_A_DATA_FOLDER + ("empty", "blank"))
def test_bench_data_dir_that_cannot_hold_mnist(where, places):
    assert_refused(run_cli("bench", "--device", "cpu", "--data-dir", places[where]))


# --- the command line as a whole -------------------------------------------------------

COMMAND_NAMES = {command.__name__.rsplit(".", 1)[-1] for command in COMMANDS} | {"eval"}


@pytest.mark.parametrize(
    "argv",
    [[], ["nope"], ["--frob"], ["data"], ["data", "nope"], ["train", "--lr"],
     ["predict"], ["compare"], ["eval"], ["train", "--resume"], ["-"], ["--"], [LONG], [ODD]],
    ids=repr,
)  # fmt: skip
def test_usage_mistakes(argv):
    assert_refused(run_cli(*argv))


@given(command=word_text)
@HYPOTHESIS
def test_unknown_commands(command):
    assume(command not in COMMAND_NAMES and command not in ("-h", "--help", "--version"))
    assume(not command.startswith("--v") and not command.startswith("--h"))  # prefixes
    assert_refused(run_cli(command))


NEWLINE_CASES = {
    "an unknown option's value": ["train", "--frob", "a\nb"],
    "a run folder's name": ["eval", "/nonexistent/a\nb"],
}


@pytest.mark.parametrize("argv", NEWLINE_CASES.values(), ids=NEWLINE_CASES)
def test_a_newline_in_a_value_keeps_one_error_line(argv):
    assert_refused(run_cli(*argv))


def test_resume_with_a_folder_where_summary_goes(finished_run, tmp_path):
    run_dir = damaged_copy(finished_run, tmp_path, {"summary.json": None})
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    outcome = run_cli("train", "--resume", str(run_dir), "--no-progress")
    assert_refused(outcome)


# --- a real process ------------------------------------------------------------------


def test_a_few_in_a_real_process(places, stripes_dir, tmp_path):
    """The real entry point, its own logging and streams: still one line each."""
    cases = [
        ["eval", places["a file"]],
        ["data", "download", "--data-dir", places["a path under a file"]],
        train_argv(stripes_dir, tmp_path / "run", "--lr", "nan"),
        ["export", places["/proc/x"]],
    ]
    for argv in cases:
        process = subprocess.run(
            [sys.executable, "-m", "seqmnist", *argv], capture_output=True, text=True, timeout=120
        )
        outcome = Outcome(tuple(argv), process.returncode, process.stdout, process.stderr)
        assert_refused(outcome)
