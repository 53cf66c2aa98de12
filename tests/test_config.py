import pytest

from seqmnist.config import RunConfig, TrainConfig, apply_overrides, load_toml
from seqmnist.errors import ConfigError
from seqmnist.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_a_valid_config_with_a_description(name):
    config = get_preset(name)
    assert config.name == name
    assert config.description
    assert RunConfig.from_dict(config.to_dict()) == config


def test_reference_presets_name_their_fix():
    for name in PRESETS:
        if name.startswith("ref"):
            assert "fix" in get_preset(name).description


def test_overrides_replace_fields_by_name_and_parse_strings():
    config = apply_overrides(
        get_preset("default"),
        {"cell": "gru", "hidden_sizes": "32,64", "lr": "0.01", "bidirectional": "true"},
    )
    assert config.model.cell == "gru"
    assert config.model.hidden_sizes == (32, 64)
    assert config.train.lr == 0.01
    assert config.model.bidirectional is True


def test_a_new_budget_replaces_the_presets_budget():
    config = apply_overrides(get_preset("ref2-lstm128"), {"epochs": "2"})
    assert config.train.epochs == 2.0 and config.train.steps is None
    assert config.train.total_steps(55000) == 858  # 2 x 429 full batches


@pytest.mark.parametrize(
    "overrides, complaint",
    [
        ({"nonsense": 1}, "unknown option"),
        ({"cell": "transformer"}, "unknown cell"),
        ({"view": "diagonal"}, "unknown view"),
        ({"lr": "-1"}, "lr must be a positive number"),
        ({"lr": "nan"}, "lr must be a positive number"),
        ({"lr": "fast"}, "not a valid float"),
        ({"batch_size": "0"}, "batch_size must be positive"),
        ({"hidden_sizes": "32,0"}, "hidden_sizes must be positive"),
        ({"epochs": "0"}, "budget must be positive"),
        ({"model.lr": "0.1"}, "unknown option"),
    ],
)
def test_impossible_values_are_config_errors(overrides, complaint):
    with pytest.raises(ConfigError, match=complaint):
        apply_overrides(get_preset("default"), overrides)


def test_exactly_one_budget():
    with pytest.raises(ConfigError, match="exactly one budget"):
        TrainConfig(epochs=1.0, steps=10)


def test_toml_files_layer_on_a_preset_and_reject_unknown_keys(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[model]\ncell = "gru"\nhidden_sizes = [64, 64]\n[train]\nsteps = 5\n')
    config = load_toml(good, get_preset("default"))
    assert config.model.hidden_sizes == (64, 64)
    assert config.train.steps == 5 and config.train.epochs is None
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ncolour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown option 'model.colour'"):
        load_toml(bad, get_preset("default"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(broken, get_preset("default"))
