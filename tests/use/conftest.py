import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Small models on a shared 2-core machine: a second intra-op thread spins
    # against the first and makes them many times slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
