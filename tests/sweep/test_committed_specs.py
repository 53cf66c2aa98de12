"""The specs committed under sweeps/ (the README's tables and the default come from them) still load."""

from pathlib import Path

import pytest

from seqmnist.sweep.spec import load_spec

SPECS = sorted((Path(__file__).parents[2] / "sweeps").glob("*.toml"))


def test_there_are_committed_specs():
    assert SPECS


@pytest.mark.parametrize("path", SPECS, ids=[path.name for path in SPECS])
def test_every_committed_spec_is_checked_whole_without_error(path):
    spec = load_spec(path)
    assert spec.seeds
