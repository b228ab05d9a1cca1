"""ModelConfig: defaults, JSON round trip, clear errors for unknown keys and bad values."""

import json

import pytest

from strategies.lstm.config import ModelConfig
from strategies.lstm.errors import ConfigError


def test_defaults_match_the_documented_pipeline():
    cfg = ModelConfig()
    assert (cfg.window, cfg.hidden, cfg.layers, cfg.cell, cfg.horizon) == (48, 32, 1, "lstm", 4)
    assert (cfg.epochs, cfg.patience, cfg.batch_size, cfg.lr, cfg.seed) == (12, 3, 256, 1e-3, 42)
    assert (cfg.train_bars, cfg.val_bars, cfg.threads, cfg.device) == (17520, 2880, 1, "cpu")
    assert cfg.features == ("ret_1", "ret_4", "ret_24", "range", "vol_z", "funding")


def test_round_trip_through_json_gives_an_equal_config():
    cfg = ModelConfig(window=24, cell="gru", features=("ret_1", "range"), min_confidence=0.4, class_weighting=False)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.features, tuple)


def test_unknown_key_is_refused_and_valid_keys_are_listed():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) hiden; valid keys: window, hidden"):
        ModelConfig.from_dict({"hiden": 64})


@pytest.mark.parametrize("changes, message", [
    ({"window": 0}, "window must be a whole number >= 1"),
    ({"hidden": "32"}, "hidden must be a whole number"),
    ({"cell": "transformer"}, "unknown cell 'transformer'; use one of lstm, gru"),
    ({"dropout": 1.5}, "dropout must be a number in"),
    ({"min_confidence": -0.1}, "min_confidence must be a number in"),
    ({"features": ("ret_1", "rsi")}, "unknown feature.*'rsi'; valid: ret_1"),
    ({"features": ()}, "features must be a non-empty list"),
    ({"features": ("ret_1", "ret_1")}, "listed twice"),
    ({"class_weighting": "yes"}, "class_weighting must be true or false"),
])
def test_bad_values_raise_a_config_error_naming_the_field(changes, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig.from_dict(changes)


def test_config_error_is_a_value_error_and_the_config_is_frozen():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(AttributeError):
        ModelConfig().window = 10  # type: ignore[misc]


def test_training_dict_leaves_out_only_fields_that_do_not_change_weights():
    a = ModelConfig().training_dict()
    b = ModelConfig(min_confidence=0.6, threads=2).training_dict()
    assert a == b and "min_confidence" not in a and "hidden" in a
