import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seqmnist.data import write_idx

HEIGHT, WIDTH, CLASSES = 6, 5, 3


def make_stripes(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is which of three rows is bright: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=count).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, HEIGHT, WIDTH)).astype(np.uint8)
    images[np.arange(count), 2 * labels.astype(int)] = 250
    return images, labels


@pytest.fixture(scope="session")
def stripes_dir(tmp_path_factory) -> Path:
    """A folder dataset of 6x5 images in 3 classes: nothing may assume 28x28 or 10 classes."""
    folder = tmp_path_factory.mktemp("stripes")
    train_images, train_labels = make_stripes(600, seed=1)
    test_images, test_labels = make_stripes(150, seed=2)
    write_idx(folder / "train-images-idx3-ubyte.gz", train_images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", test_images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", test_labels)
    return folder


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST, through SEQMNIST_DATA_DIR as CI sets it."""
    value = os.environ.get("SEQMNIST_DATA_DIR")
    if not value or not (Path(value) / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("SEQMNIST_DATA_DIR does not point at the MNIST files")
    return Path(value)


@pytest.fixture(scope="session")
def mnist_run(mnist_dir, tmp_path_factory) -> Path:
    """A small LSTM trained briefly on the real MNIST (about 95% test accuracy), once a session."""
    import torch

    from seqmnist.api import train

    run_dir = tmp_path_factory.mktemp("mnist-run") / "lstm64"
    # One intra-op thread: on a shared 2-core machine a second one spins and
    # makes this several times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train("default", run_dir, progress=False, data_dir=str(mnist_dir), hidden_sizes=(64,),
              steps=300, lr=0.01, device="cpu")  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    return run_dir


@pytest.fixture
def untrained_run(tmp_path):
    """Makes run directories holding untrained models: enough to load, predict and export."""
    import torch

    from seqmnist.config import ModelConfig, RunConfig
    from seqmnist.runs import (
        SUMMARY_FILE,
        WEIGHTS_FILE,
        ModelInfo,
        build_model,
        save_weights,
        write_config,
    )

    def make(name="run", image_shape=(28, 28), classes=10, **model_fields) -> Path:
        torch.manual_seed(0)
        config = RunConfig(model=ModelConfig(**{"hidden_sizes": (8,), **model_fields}))
        info = ModelInfo(tuple(image_shape), tuple(str(label) for label in range(classes)))
        run_dir = tmp_path / name
        run_dir.mkdir(parents=True)
        write_config(run_dir, config)
        digest = save_weights(run_dir / WEIGHTS_FILE, build_model(config.model, info), info)
        # A finished run's summary.json, with the checksum every reader checks.
        (run_dir / SUMMARY_FILE).write_text(json.dumps({"checksums": {WEIGHTS_FILE: digest}}))
        return run_dir

    return make


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for tiny models: a second one only spins against the first.

    On a busy 2-core machine that spinning makes tiny runs many times slower.
    Both runs a test compares get the same setting, so bit-identity is unaffected.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def one_error_line(capsys):
    """Run the CLI; assert a non-zero exit, nothing on stdout and one clean error line
    naming ``option``; return the line."""
    from seqmnist.cli import main

    def run(argv: list[str], option: str) -> str:
        assert main(argv) != 0
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith("seqmnist: error: ") and option in lines[0]
        assert "Traceback" not in captured.err and captured.out == ""
        return lines[0]

    return run


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_as_from_a_terminal():
    """Ctrl-C acts as it does in a terminal, however the suite was started.

    A shell starts a background job (`pytest &`, `nohup ... &`) with SIGINT
    ignored, and children inherit that: the tests of what Ctrl-C does would
    then test nothing (a signalled child trained on to its end). A Python
    handler is reset to the default in a child, so they see the terminal's.
    """
    import signal

    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
