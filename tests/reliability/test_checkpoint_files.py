"""Damaged, foreign and hostile checkpoint files; a full disk or an unwritable folder."""

import errno
import pathlib
import pickle
import re
import shutil
from pathlib import Path

import pytest
from support import sha256, store, tiny_config

from seqmnist.cli import main
from seqmnist.errors import RunError, StorageError
from seqmnist.training import train

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "seqmnist"


@pytest.fixture(scope="module")
def finished_run(stripes_dir, tmp_path_factory):
    """A 12-step run (checkpoints at 8 and 12 kept), trained once for the module."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_config(stripes_dir, steps=12), run_dir, progress=False)
    return run_dir


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def newest(run_dir, suffix):
    return store(run_dir).paths()[-1].with_suffix(suffix)


def cut_points(size):
    return {"0": 0, "1": 1, "8": 8, "half": size // 2, "last byte": size - 1}


@pytest.mark.parametrize("cut", list(cut_points(100)))
@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_a_truncated_checkpoint_is_one_clear_error(run_copy, suffix, cut):
    path = newest(run_copy, suffix)
    data = path.read_bytes()
    path.write_bytes(data[: cut_points(len(data))[cut]])
    with pytest.raises(RunError) as error:
        store(run_copy).read(newest(run_copy, ".json"))
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert re.search("truncated|empty", message)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_a_flipped_byte_anywhere_is_detected(run_copy, suffix):
    path = newest(run_copy, suffix)
    original = path.read_bytes()
    checkpoints = store(run_copy)
    # 40 positions spread over the file, first and last included.
    for position in sorted({round(i * (len(original) - 1) / 39) for i in range(40)}):
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(RunError, match=re.escape(str(path))):
            checkpoints.read(newest(run_copy, ".json"))
    path.write_bytes(original)
    assert checkpoints.read(newest(run_copy, ".json")).step == 12


def test_a_checkpoint_of_another_configuration_is_refused(run_copy, stripes_dir, tmp_path):
    other = tmp_path / "other"
    train(tiny_config(stripes_dir, steps=4, hidden_sizes="12"), other, progress=False)
    planted = run_copy / "checkpoints/step-00000099.json"
    shutil.copy(newest(other, ".json"), planted)
    shutil.copy(newest(other, ".safetensors"), planted.with_suffix(".safetensors"))
    with pytest.raises(RunError, match="written by a different configuration") as error:
        store(run_copy).read(planted)
    assert str(planted) in str(error.value) and "model.hidden_sizes [12] there, [8] here" in str(
        error.value
    )


def test_resume_falls_back_to_the_previous_good_checkpoint_and_says_so(
    run_copy, stripes_dir, finished_run, caplog
):
    damaged = newest(run_copy, ".safetensors")
    damaged.write_bytes(damaged.read_bytes()[:-1])
    (run_copy / "model.safetensors").unlink()
    with caplog.at_level("WARNING", logger="seqmnist.train"):
        train(tiny_config(stripes_dir, steps=12), run_copy, progress=False, resume=True)
    warnings = caplog.text
    assert f"{damaged} is truncated" in warnings and "step-00000008.json" in warnings
    # Resumed from step 8, the run still ends exactly where the whole run ended.
    assert sha256(run_copy / "model.safetensors") == sha256(finished_run / "model.safetensors")


def test_no_usable_checkpoint_is_one_error_listing_each_problem(run_copy):
    for path in (run_copy / "checkpoints").glob("*.json"):
        path.write_bytes(b"")
    assert main(["train", "--resume", str(run_copy)]) == 2
    with pytest.raises(RunError, match="no usable checkpoint.*step-00000012.json is empty.*step-"):
        store(run_copy).latest()


def fail_writes_of(monkeypatch, name_part, error_number):
    """Writing a file whose name holds ``name_part`` stops half way with ``error_number``."""
    write_bytes = pathlib.Path.write_bytes

    def failing(self, data):
        if name_part not in self.name:
            return write_bytes(self, data)
        write_bytes(self, data[: len(data) // 2])
        raise OSError(error_number, "simulated")

    monkeypatch.setattr(pathlib.Path, "write_bytes", failing)


@pytest.mark.parametrize("failing_file", ["step-00000008.safetensors", "step-00000008.json"])
@pytest.mark.parametrize(
    "error_number, complaint",
    [(errno.ENOSPC, "disk full while writing"), (errno.EACCES, "cannot write")],
    ids=["ENOSPC", "EACCES"],
)
def test_a_failed_save_is_one_clear_error_and_keeps_the_previous_checkpoint(
    stripes_dir, tmp_path, monkeypatch, capsys, failing_file, error_number, complaint
):
    run_dir = tmp_path / "run"
    fail_writes_of(monkeypatch, failing_file, error_number)
    argv = ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--steps", "12",
            "--hidden-sizes", "8", "--batch-size", "32", "--checkpoint-every", "4", "--device", "cpu",
            "--no-progress", "--out", str(run_dir)]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith(
        f"seqmnist: error: {complaint} {run_dir}/checkpoints/{failing_file}"
    )
    assert "Traceback" not in "\n".join(error)
    # The step-4 checkpoint is whole, and nothing of the failed save is left behind.
    left = sorted(path.name for path in (run_dir / "checkpoints").iterdir())
    assert left == ["step-00000004.json", "step-00000004.safetensors"]
    assert store(run_dir).latest().step == 4


def test_an_output_folder_that_cannot_be_created_is_one_clear_error(stripes_dir, tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StorageError, match="could not write .*a-file/run: Not a directory"):
        train(tiny_config(stripes_dir, steps=2), tmp_path / "a-file/run", progress=False)


class Planted:
    """Unpickling this creates ``marker``: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_a_planted_pickle_is_refused_and_never_run(run_copy, tmp_path, suffix):
    marker = tmp_path / "marker"
    payload = pickle.dumps(Planted(marker))
    pickle.loads(payload).close()  # the payload is live: loading it does create the marker
    assert marker.exists()
    marker.unlink()

    newest(run_copy, suffix).write_bytes(payload)
    with pytest.raises(RunError):
        store(run_copy).read(newest(run_copy, ".json"))
    assert store(run_copy).latest().step == 8  # resume would fall back past it
    assert not marker.exists()


def test_nothing_in_the_package_unpickles():
    # Only safetensors and JSON are read; torch.load, if ever used, must be weights_only.
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bimport pickle\b|pickle\.loads?\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)


def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path):
    import os

    from seqmnist.files import atomic_write_bytes

    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "shared.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "shared.bin").stat().st_mode & 0o777 == 0o644
