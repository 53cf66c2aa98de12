"""The inputs the trust issue found printing tracebacks: each is now one line and a non-zero exit."""

import pytest

from seqmnist.cli import main
from seqmnist.config import ModelConfig
from seqmnist.errors import ConfigError
from seqmnist.runs import ModelInfo, check_model_fits


def train_argv(stripes_dir, tmp_path, *extra):
    return ["train", "--dataset", str(stripes_dir), "--validation-size", "100", "--steps", "2",
            "--no-progress", "--out", str(tmp_path / "run"), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "extra, complaint",
    [
        (("--seed", str(2**63)), "seed must be between 0 and 2**63 - 1"),
        (("--seed", str(2**64 + 5)), "seed must be between 0 and 2**63 - 1"),
        (("--seed", "-1"), "seed must be between 0 and 2**63 - 1"),
        (("--permutation-seed", str(2**70)), "permutation_seed must be between"),
        (("--hidden-sizes", "99999999999"), "hidden_sizes must be at most"),
        (("--hidden-sizes", "200000"), "choose smaller --hidden-sizes"),
        (("--steps", str(10**11)), "steps must be at most"),
        (("--weight-decay", "inf"), "weight_decay must be a finite number"),
        (("--threads", "0"), "threads must be between 1 and"),
    ],
)
def test_bad_numbers_are_one_line_before_any_work(stripes_dir, tmp_path, capsys, extra, complaint):
    assert main(train_argv(stripes_dir, tmp_path, *extra)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and complaint in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_a_model_too_large_for_memory_is_refused_without_allocating_it():
    info = ModelInfo((28, 28), tuple("0123456789"))
    assert check_model_fits(ModelConfig(hidden_sizes=(128,)), info) == 82_186
    with pytest.raises(ConfigError, match="parameters, needing at least .* GiB"):
        check_model_fits(ModelConfig(hidden_sizes=(300_000,)), info)


def test_config_that_is_a_folder_is_one_line(stripes_dir, tmp_path, capsys):
    assert main(train_argv(stripes_dir, tmp_path, "--config", str(tmp_path))) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is a folder" in lines[0], lines
