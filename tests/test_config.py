"""Configs: TOML files, flags on top, and refusal of typos."""

import pytest

from backtests.cli import build_config, make_parser
from backtests.config import ConfigError, load_config
from pathlib import Path

CONFIGS = sorted(p for p in (Path(__file__).parent.parent / "backtests" / "configs").glob("*.toml")
                 if not p.name.startswith(("compare", "optimize")))  # grids and searches: tested with their commands


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.name and config.strategy


def test_flags_override_the_file():
    args = make_parser().parse_args(["backtest", "--config", "backtests/configs/sma_cross.toml", "--leverage", "3",
                                     "--start", "2023-06-01", "--baselines", ""])
    config = build_config(args)
    assert config.broker.leverage == 3.0
    assert config.data.start == "2023-06-01" and config.data.end == "2024-12-31"
    assert config.params == {"fast": 12, "slow": 48}
    assert config.baselines == ()


def test_unknown_key_is_refused_with_the_valid_ones(tmp_path):
    (tmp_path / "c.toml").write_text('strategy = "flat"\n[broker]\nleverge = 2\n')
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in .*\[broker\]: leverge; valid: .*leverage"):
        load_config(tmp_path / "c.toml")


def test_invalid_toml_and_missing_file_are_one_line_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("strategy = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("field,value", [("leverage", 0.5), ("leverage", 200), ("cash", -1), ("taker_fee", 2)])
def test_out_of_range_broker_settings_are_refused(tmp_path, field, value):
    (tmp_path / "c.toml").write_text(f'[broker]\n{field} = {value}\n')
    with pytest.raises(ConfigError, match=field):
        load_config(tmp_path / "c.toml")


def test_config_round_trips_through_plain_data():
    from backtests.config import config_from_dict

    config = load_config("backtests/configs/btc_lstm_1h.toml")
    assert config_from_dict(config.to_dict()) == config


def test_every_broker_setting_has_a_flag():
    args = make_parser().parse_args(["backtest", "--maker-fee", "0.0001", "--slippage", "range", "--slippage-coef",
                                     "0.2", "--liquidation-fee", "0.01", "--no-liquidation", "--no-funding"])
    broker = build_config(args).broker
    assert (broker.maker_fee, broker.slippage, broker.slippage_coef, broker.liquidation_fee) == (0.0001, "range", 0.2, 0.01)
    assert broker.liquidation is False and broker.funding is False
