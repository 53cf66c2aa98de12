import itertools

import pytest
import torch

from seqmnist.config import CELLS, READOUTS, VIEWS, ModelConfig
from seqmnist.model import RecurrentClassifier, SequenceView

IMAGE_SHAPE = (5, 7)  # not square and not 28x28, so no shape can be assumed
NUM_CLASSES = 3


def build(**fields) -> RecurrentClassifier:
    torch.manual_seed(0)
    return RecurrentClassifier(ModelConfig(**fields), IMAGE_SHAPE, NUM_CLASSES)


@pytest.mark.parametrize(
    "cell, bidirectional, readout", list(itertools.product(CELLS, (False, True), READOUTS))
)
def test_every_cell_direction_and_readout_trains(cell, bidirectional, readout):
    model = build(cell=cell, bidirectional=bidirectional, readout=readout, hidden_sizes=(4, 6))
    images = torch.rand(2, *IMAGE_SHAPE)
    logits = model(images)
    assert logits.shape == (2, NUM_CLASSES)
    directions = 2 if bidirectional else 1
    assert model.features(images).shape == (2, 6 * directions)
    assert model.sequence_outputs(images).shape == (2, IMAGE_SHAPE[0], 6 * directions)
    logits.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert any(parameter.grad.abs().sum() > 0 for parameter in model.parameters())


@pytest.mark.parametrize("view", VIEWS)
def test_views_shape_sequences(view):
    sequence_view = SequenceView(view, IMAGE_SHAPE, permutation_seed=1)
    images = torch.arange(2 * 35, dtype=torch.float32).reshape(2, *IMAGE_SHAPE)
    sequences = sequence_view(images)
    assert sequences.shape == (2, sequence_view.steps, sequence_view.features)
    # Every view is a rearrangement: no pixel is lost or duplicated.
    assert torch.equal(sequences.flatten(1).sort().values, images.flatten(1).sort().values)


def test_columns_view_reads_columns_and_rows_view_reads_rows():
    images = torch.arange(35, dtype=torch.float32).reshape(1, *IMAGE_SHAPE)
    assert torch.equal(SequenceView("rows", IMAGE_SHAPE)(images)[0, 1], images[0, 1, :])
    assert torch.equal(SequenceView("columns", IMAGE_SHAPE)(images)[0, 1], images[0, :, 1])


def test_permutation_depends_on_its_seed_and_is_saved_with_the_weights():
    first = build(view="permuted", permutation_seed=1)
    second = build(view="permuted", permutation_seed=2)
    assert not torch.equal(first.view.permutation, second.view.permutation)
    assert "view.permutation" in first.state_dict()
    assert sorted(first.view.permutation.tolist()) == list(range(35))


def _first_step_influence(model: RecurrentClassifier) -> torch.Tensor:
    """Gradient of the readout with respect to the first time step's pixels, per feature."""
    images = torch.rand(1, *IMAGE_SHAPE, requires_grad=True)
    features = model.features(images)[0]
    influence = []
    for feature in features:
        (grad,) = torch.autograd.grad(feature, images, retain_graph=True)
        influence.append(grad[0, 0].abs().sum())
    return torch.stack(influence)


def test_final_readout_backward_half_sees_the_first_step():
    model = build(bidirectional=True, readout="final", hidden_sizes=(4,))
    influence = _first_step_influence(model)
    assert (influence[:4] > 0).all()  # forward direction read step 0 first
    assert (influence[4:] > 0).all()  # backward direction ends at step 0


def test_last_readout_backward_half_ignores_the_first_step():
    # Reference 5's readout: the backward direction at the last step has seen one step.
    model = build(bidirectional=True, readout="last", hidden_sizes=(4,))
    influence = _first_step_influence(model)
    assert (influence[:4] > 0).all()
    assert (influence[4:] == 0).all()


def test_forget_gate_bias_is_set_once():
    model = build(cell="lstm", hidden_sizes=(4,))
    layer = model.layers[0]
    total = layer.bias_ih_l0 + layer.bias_hh_l0
    assert torch.allclose(total[4:8], torch.ones(4))


def test_stacked_layers_may_differ_in_width():
    model = build(hidden_sizes=(32, 64))
    assert [layer.hidden_size for layer in model.layers] == [32, 64]
    assert model.head.in_features == 64


def test_building_many_models_in_one_process_just_works():
    models = [build(cell=cell) for cell in CELLS for _ in range(3)]
    assert len({id(model) for model in models}) == len(models)
