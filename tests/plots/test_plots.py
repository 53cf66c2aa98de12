"""seqmnist plot: four PNGs of sensible size, on a synthetic run and on the real MNIST."""

import pytest
from PIL import Image

from seqmnist.api import make_config, train
from seqmnist.cli import main
from seqmnist.plots import write_run_plots

NAMES = ("curves.png", "confusion.png", "misclassified.png", "steps.png")


def assert_pngs(paths):
    assert [path.name for path in paths] == list(NAMES)
    for path in paths:
        assert 5_000 < path.stat().st_size < 200_000, path
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"
            width, height = image.size
            assert 200 <= width <= 1600 and 200 <= height <= 1600, (path, image.size)


def test_plots_of_a_small_run_on_other_image_sizes(stripes_dir, tmp_path):
    config = make_config("default", dataset=str(stripes_dir), validation_size=100,
                         hidden_sizes="8", batch_size=32, steps=40, log_every=5,
                         lr=0.01, device="cpu")  # fmt: skip
    train(config, tmp_path / "run", progress=False)
    # No examples given: the default of 4 becomes the 3 classes this run has.
    assert_pngs(write_run_plots(tmp_path / "run"))


@pytest.mark.slow
def test_plot_command_on_a_real_mnist_run(mnist_run, tmp_path, capsys):
    assert main(["plot", str(mnist_run), "--out", str(tmp_path / "plots")]) == 0
    written = [line.removeprefix("wrote ") for line in capsys.readouterr().out.splitlines()]
    assert_pngs([tmp_path / "plots" / name for name in NAMES])
    assert written == [str(tmp_path / "plots" / name) for name in NAMES]
