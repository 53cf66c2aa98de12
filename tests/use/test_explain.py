"""Per-step probabilities: each is the model's answer had the image ended there."""

import itertools

import numpy as np
import pytest
import torch

from seqmnist.config import CELLS, READOUTS, ModelConfig
from seqmnist.model import RecurrentClassifier
from seqmnist.use.explain import explain, step_ends, step_probabilities

IMAGE_SHAPE = (5, 7)  # not 28x28: nothing may assume it
CLASSES = ("a", "b", "c")


def build(**fields) -> RecurrentClassifier:
    torch.manual_seed(0)
    return RecurrentClassifier(ModelConfig(hidden_sizes=(4, 6), **fields), IMAGE_SHAPE, 3).eval()


@pytest.mark.parametrize(
    "cell, bidirectional, readout", list(itertools.product(CELLS, (False, True), READOUTS))
)
def test_each_step_is_the_prediction_on_the_image_cut_there(cell, bidirectional, readout):
    model = build(cell=cell, bidirectional=bidirectional, readout=readout)
    images = torch.rand(3, *IMAGE_SHAPE)
    ends = list(range(1, IMAGE_SHAPE[0] + 1))
    probabilities = step_probabilities(model, images, ends)  # (B, S, C)
    assert probabilities.shape == (3, len(ends), 3)
    with torch.no_grad():
        for index, end in enumerate(ends):
            # The rows view reads rows, so the first `end` rows are the first `end` steps.
            cut = model(images[:, :end]).softmax(dim=1)
            torch.testing.assert_close(probabilities[:, index], cut, atol=1e-6, rtol=1e-5)
    # The last step is the model's prediction on the whole image.
    torch.testing.assert_close(probabilities[:, -1], model(images).softmax(dim=1).detach())


@pytest.mark.parametrize("view", ["columns", "pixels", "permuted"])
def test_every_view_ends_at_the_whole_image_prediction(view):
    model = build(view=view, bidirectional=True)
    images = np.random.default_rng(0).random((2, *IMAGE_SHAPE), dtype=np.float32)
    explanations = explain(model, images, ["x", "y"], CLASSES, max_points=8)
    expected = model(torch.from_numpy(images)).softmax(dim=1).detach().numpy()
    for explanation, row in zip(explanations, expected):
        assert explanation.steps[-1] == model.view.steps
        assert len(explanation.steps) <= 9
        np.testing.assert_allclose(explanation.probabilities[-1], row, atol=1e-6)
        np.testing.assert_allclose(explanation.probabilities.sum(axis=1), 1, atol=1e-5)


def test_long_sequences_are_shown_at_evenly_spaced_steps():
    assert step_ends(28) == list(range(1, 29))
    ends = step_ends(784)
    assert ends[-1] == 784 and len(ends) <= 57
    assert len(set(np.diff(ends[:-1]))) == 1
