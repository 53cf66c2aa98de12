"""Every reliability test trains tiny models with one intra-op thread."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield
