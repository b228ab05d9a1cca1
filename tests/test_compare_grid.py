"""The comparison grid as plain data: ranges from flags and TOML, rolling windows, cells and the spec file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backtests.compare import load_compare_spec, plan_cells, resolve_spec
from backtests.config import BacktestConfig, ConfigError
from backtests.compare.grid import Cell, DateRange, build_cells, parse_ranges, ranges_from_mapping, rolling_ranges

EXAMPLE = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "compare_example.toml"


def test_parse_ranges_reads_named_and_unnamed_spans():
    ranges = parse_ranges("bull=2020-10-01:2021-04-15, 2022-04-01:2022-12-31,day=2024-01-01T12:00:2024-01-02")
    assert ranges == [DateRange("bull", "2020-10-01", "2021-04-15"),
                      DateRange("2022-04-01:2022-12-31", "2022-04-01", "2022-12-31"),
                      DateRange("day", "2024-01-01T12:00", "2024-01-02")]


@pytest.mark.parametrize("text, message", [
    ("bull=2021-01-01", "cannot read date range"),
    ("bull=2021-04-15:2020-10-01", "empty or reversed"),
    ("a=2021-01-01:2021-02-01,a=2021-03-01:2021-04-01", "clash"),
    ("a b=2021-01-01:2021-02-01,a-b=2021-03-01:2021-04-01", "clash"),      # same folder name
    (" , ", "empty"),
])
def test_parse_ranges_refuses_bad_input_with_a_message(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_ranges(text)


def test_ranges_from_a_toml_table_keep_the_file_order():
    ranges = ranges_from_mapping({"bear": "2022-04-01:2022-12-31", "bull": {"start": "2020-10-01", "end": "2021-04-15"}})
    assert [r.name for r in ranges] == ["bear", "bull"]
    assert ranges[1] == DateRange("bull", "2020-10-01", "2021-04-15")


def test_rolling_six_months_cuts_a_year_in_two_halves():
    assert rolling_ranges("2022-01-01", "2022-12-31", "6M") == [
        DateRange("2022-01-01", "2022-01-01", "2022-06-30"), DateRange("2022-07-01", "2022-07-01", "2022-12-31")]


def test_rolling_keeps_a_shorter_last_window_and_leaves_no_gap():
    windows = rolling_ranges("2023-01-01", "2023-03-15", "30D")
    assert [(w.start, w.end) for w in windows] == [("2023-01-01", "2023-01-30"), ("2023-01-31", "2023-03-01"),
                                                   ("2023-03-02", "2023-03-15")]


@pytest.mark.parametrize("window", ["6", "M6", "0M", "6H", "1.5M"])
def test_rolling_refuses_unreadable_windows(window):
    with pytest.raises(ConfigError, match="rolling window"):
        rolling_ranges("2022-01-01", "2022-12-31", window)


def test_cells_run_by_range_then_symbol_then_strategy():
    r1, r2 = DateRange("a", "2022-01-01", "2022-01-31"), DateRange("b", "2022-02-01", "2022-02-28")
    cells = build_cells(["x", "y"], [r1, r2], ["BTC/USDT:USDT", "ETH/USDT:USDT"])
    assert [(c.range.name, c.symbol[:3], c.strategy) for c in cells[:5]] == [
        ("a", "BTC", "x"), ("a", "BTC", "y"), ("a", "ETH", "x"), ("a", "ETH", "y"), ("b", "BTC", "x")]
    assert len(cells) == 8
    with pytest.raises(ConfigError, match="listed twice"):
        build_cells(["x", "x"], [r1], ["BTC/USDT:USDT"])


def test_cell_slug_is_a_safe_folder_name():
    cell = Cell("sma_cross", DateRange("<b>bear/2022</b>", "2022-04-01", "2022-12-31"), "BTC/USDT:USDT")
    assert cell.slug == "b-bear-2022-b__BTC-USDT-USDT__sma_cross"


def test_spec_defaults_to_the_config_span_and_its_strategy_and_baselines():
    config = BacktestConfig(strategy="sma_cross", baselines=("buy_hold",))
    spec = resolve_spec(config, {})
    assert spec.strategies == ("sma_cross", "buy_hold")
    assert spec.ranges == (DateRange("span", config.data.start, config.data.end),)
    assert spec.symbols == (config.data.symbol,)


@pytest.mark.parametrize("table, message", [
    ({"stratgies": ["buy_hold"]}, "unknown key"),
    ({"strategies": ["buy_hodl"]}, "did you mean 'buy_hold'"),
    ({"symbols": ["BTCUSDT"]}, "malformed symbol"),
    ({"ranges": "a=2022-01-01:2022-02-01", "rolling": "1M"}, "either ranges or rolling"),
    ({"workers": -1}, "workers"),
    ({"confidence": 1.2}, "confidence"),
])
def test_spec_refuses_bad_compare_tables(table, message):
    with pytest.raises(ValueError, match=message):
        resolve_spec(BacktestConfig(strategy="buy_hold"), table)


def test_spec_wants_strategy_parameters_per_strategy():
    with pytest.raises(ConfigError, match=r"\[params.sma_cross\]"):
        resolve_spec(BacktestConfig(strategy="sma_cross", params={"fast": 10}), {})
    with pytest.raises(ConfigError, match="not compared: lstm"):
        resolve_spec(BacktestConfig(strategy="sma_cross", params={"lstm": {"mode": "online"}}), {})


def test_example_spec_file_plans_all_18_cells_with_enough_history_for_the_lstm():
    spec = load_compare_spec(EXAMPLE)
    assert (len(spec.strategies), len(spec.ranges), len(spec.symbols)) == (3, 3, 2)
    plan = plan_cells(spec)
    tasks = plan.tasks
    assert plan.failed == [] and len(tasks) == 18
    assert sorted(plan.data) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]     # sent once per worker, not with each cell
    lstm = next(t for t in tasks if t.cell.strategy == "lstm" and t.cell.range.name == "bull")
    index = lstm.market(plan.data).candles.index
    start, end = pd.Timestamp("2020-10-01", tz="UTC"), pd.Timestamp("2021-04-16", tz="UTC")
    assert index[0] == start - pd.Timedelta(hours=lstm.history_bars)   # the history the model trains on
    assert index[-1] < end
    sma = next(t for t in tasks if t.cell.strategy == "sma_cross" and t.cell.range.name == "bull")
    assert sma.config.params == {"fast": 20, "slow": 50}
    assert str(sma.market(plan.data).candles.index[0]) == "2020-10-01 00:00:00+00:00"


def test_toml_spec_refuses_unknown_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[compare]\nstrategies = ["buy_hold"]\nwokers = 2\n')
    with pytest.raises(ConfigError, match="wokers"):
        load_compare_spec(path)
