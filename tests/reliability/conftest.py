"""Every reliability test trains with one intra-op thread."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Two intra-op threads on a shared 2-core machine spin against each other and make
    # these tiny runs ~30x slower; one thread keeps them in seconds. Same for both
    # runs a test compares, so bit-identity is unaffected.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
