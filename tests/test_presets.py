"""Every family's presets: the row recipe's size, the published recipes' sources, partial runs."""

import dataclasses

import pytest
import torch

from seqmnist.config import apply_overrides
from seqmnist.model.options import CELLS
from seqmnist.model.recurrent import RecurrentClassifier
from seqmnist.presets import PRESETS, PUBLISHED, get_preset, recipe_status

NEW_FAMILIES = [cell for cell in CELLS if cell not in ("rnn", "lstm", "gru")]
MNIST_TRAIN = 55_000


def _parameters(name: str) -> int:
    config = get_preset(name)
    with torch.device("meta"):  # counted, never allocated
        model = RecurrentClassifier(config.model, (28, 28), 10)
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("cell", NEW_FAMILIES)
def test_every_family_has_a_row_pixel_and_permuted_preset(cell):
    views = {kind: get_preset(f"{kind}-{cell}").model for kind in ("row", "pixel", "permuted")}
    assert {kind: model.cell for kind, model in views.items()} == dict.fromkeys(views, cell)
    assert [model.view for model in views.values()] == ["rows", "pixels", "permuted"]


@pytest.mark.parametrize("cell", NEW_FAMILIES)
def test_row_presets_sit_at_about_the_row_lstms_parameter_count(cell):
    default = _parameters("row-lstm")
    assert 0.8 * default <= _parameters(f"row-{cell}") <= 1.2 * default


def test_every_published_recipe_names_its_source_and_figure_or_says_it_has_none():
    recipes = [name for name in PRESETS if name.startswith(("pixel-", "permuted-"))]
    assert sorted(recipes) == sorted(PUBLISHED)
    for name in recipes:
        config = get_preset(name)
        published, description = PUBLISHED[name], config.description
        assert published.source in description
        # What the description says of the recipe is what the preset trains.
        assert f"batch {config.train.batch_size}" in description
        budget = f"{config.train.epochs:g} epochs" if config.train.epochs else "M steps"
        assert budget in description
        if published.test_accuracy is None:
            assert "no published figure" in description
        else:
            assert f"{100 * published.test_accuracy:.2f}%" in description
            assert "not measured here" in description


def test_a_shorter_budget_is_a_partial_run_of_the_recipe_with_its_paper_figure():
    recipe = get_preset("pixel-cornn")
    status = recipe_status(apply_overrides(recipe, {"steps": 100}), MNIST_TRAIN)
    assert status["partial"] and status["steps"] == 100
    assert status["recipe_steps"] == recipe.train.total_steps(MNIST_TRAIN) > 100
    assert status["published"]["test_accuracy"] == PUBLISHED["pixel-cornn"].test_accuracy
    whole = recipe_status(apply_overrides(recipe, {"threads": 1}), MNIST_TRAIN)
    assert not whole["partial"] and whole["steps"] == whole["recipe_steps"]


def test_another_seed_is_still_the_recipe_and_a_longer_budget_says_so():
    recipe = get_preset("pixel-cornn")
    seeded = recipe_status(apply_overrides(recipe, {"seed": 1, "steps": 100}), MNIST_TRAIN)
    assert seeded is not None and seeded["partial"]
    longer = recipe_status(apply_overrides(recipe, {"epochs": 200}), MNIST_TRAIN)
    assert longer["longer"] and not longer["partial"]


@pytest.mark.parametrize(
    "change", [{"hidden_sizes": "64"}, {"lr": 0.1}, {"cornn_dt": 0.5}, {"batch_size": 64}]
)
def test_a_run_that_changes_the_recipe_is_no_run_of_it(change):
    config = apply_overrides(get_preset("pixel-cornn"), {**change, "steps": 100})
    assert recipe_status(config, MNIST_TRAIN) is None


def test_a_custom_run_has_no_recipe():
    config = dataclasses.replace(get_preset("default"), name="custom")
    assert recipe_status(config, MNIST_TRAIN) is None


def test_the_summary_of_a_partial_run_says_partial_with_its_budget_beside_the_papers_figure():
    from pathlib import Path

    from seqmnist.cli.train import format_summary

    status = recipe_status(apply_overrides(get_preset("pixel-lem"), {"steps": 300}), MNIST_TRAIN)
    summary = {
        "test_accuracy": 0.5, "test_loss": 1.0, "val_accuracy": 0.5, "best_step": 300,
        "steps": 300, "train_seconds": 60.0, "samples_per_second": 640.0, "params": 68_362,
        "runtime": {"device": "cpu", "precision": "fp32", "threads": 2}, "recipe": status,
    }  # fmt: skip
    text = format_summary(summary, Path("runs/lem"))
    recipe_steps = get_preset("pixel-lem").train.total_steps(MNIST_TRAIN)
    assert f"partial run: 300 of the {recipe_steps:,} steps of preset pixel-lem" in text
    assert "99.45%" in text and "not comparable" in text
    whole = format_summary({**summary, "recipe": {**status, "partial": False}}, Path("runs/lem"))
    assert "partial" not in whole and "99.45%" not in whole
