"""The lookahead audit: clean strategies pass, deliberately peeking ones are caught in the right component."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from backtests.config import BacktestConfig
from backtests.lookahead import (audit_lookahead, blank_future, compare_rows,
                                 lookahead_command, sample_cutoffs, truncate_market)
from data_feeds import MarketData
from strategies import registry
from conftest import make_candles

SPAN = {"start": "2024-01-01", "end": "2024-01-10"}
TINY_MODEL = {"window": 8, "hidden": 4, "train_bars": 600, "val_bars": 200, "epochs": 1}


def config(strategy: str) -> BacktestConfig:
    return BacktestConfig(strategy=strategy, model=TINY_MODEL).replace(data=SPAN)


@pytest.fixture
def peeking_registered(monkeypatch):
    """The two biased strategies under registry names, for this test only."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register_strategy("peeking_feature", "strategies.peeking:PeekingFeature")
    registry.register_strategy("peeking_scaler", "strategies.peeking:PeekingScaler")


def hand_market(n: int = 10, mark: bool = True) -> MarketData:
    candles = make_candles(100 + np.arange(n, dtype=float))
    funding_index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 04:00", "2024-01-01 08:00"], tz="UTC",
                                     name="timestamp")
    funding = pd.DataFrame({"funding_rate": [0.0001, 0.0002, 0.0003]}, index=funding_index)
    return MarketData("binanceusdm", "BTC/USDT:USDT", "1h", candles, funding, candles.copy() if mark else None,
                      "hand-made")


# ---------------------------------------------------------------- pure pieces

def test_truncation_keeps_bars_up_to_t_and_settlements_up_to_its_close():
    market = hand_market()
    cut = truncate_market(market, pd.Timestamp("2024-01-01 03:00", tz="UTC"))
    assert cut.candles.index[-1] == pd.Timestamp("2024-01-01 03:00", tz="UTC")
    assert len(cut.candles) == 4 and len(cut.mark) == 4
    # the 04:00 settlement is at bar 03:00's close, so it is known; 08:00 is not
    assert list(cut.funding.index.hour) == [0, 4]


def test_blank_future_keeps_every_bar_time_but_none_of_the_real_prices():
    market = hand_market()
    t = pd.Timestamp("2024-01-01 05:00", tz="UTC")
    blank = blank_future(market, t)
    pd.testing.assert_index_equal(blank.candles.index, market.candles.index)
    pd.testing.assert_frame_equal(blank.candles.loc[:t], market.candles.loc[:t])
    later = blank.candles.loc[blank.candles.index > t]
    assert (later[["open", "high", "low", "close"]] == 105.0).all().all()
    assert (later["volume"] == 0).all()
    assert (blank.mark.loc[blank.mark.index > t, "close"] == 105.0).all()
    assert list(blank.funding.index.hour) == [0, 4]


def test_blank_future_without_mark_prices_stays_without():
    assert blank_future(hand_market(mark=False), pd.Timestamp("2024-01-01 02:00", tz="UTC")).mark is None


def test_cutoffs_are_distinct_sorted_bars_and_the_same_for_the_same_seed():
    index = pd.date_range("2024-01-01", periods=100, freq="1h", tz="UTC")
    a = sample_cutoffs(index, 10, seed=3)
    assert len(a) == 10 and a.is_unique and a.is_monotonic_increasing and a.isin(index).all()
    pd.testing.assert_index_equal(a, sample_cutoffs(index, 10, seed=3))
    assert not a.equals(sample_cutoffs(index, 10, seed=4))
    assert len(sample_cutoffs(index[:5], 50, seed=0)) == 5
    with pytest.raises(ValueError, match="at least 1"):
        sample_cutoffs(index, 0, seed=0)


def test_compare_rows_checks_only_start_to_t_and_treats_one_sided_nan_as_a_difference():
    index = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    full = pd.DataFrame({"x": [np.nan, 1.0, 2.0, 3.0, 4.0]}, index=index)
    cut = pd.DataFrame({"x": [np.nan, 1.0, 2.0, np.nan]}, index=index[:4])
    clean = compare_rows(full, cut, index[0], index[2])
    assert (clean.rows, clean.differing, clean.first) == (3, 0, None)
    dirty = compare_rows(full, cut, index[1], index[3])
    assert (dirty.rows, dirty.differing, dirty.first, dirty.max_abs) == (3, 1, index[3], np.inf)
    missing_bar = compare_rows(full, cut.iloc[:2], index[0], index[2])
    assert missing_bar.differing == 1 and missing_bar.first == index[2]


def test_compare_rows_tolerance_is_absolute():
    index = pd.date_range("2024-01-01", periods=2, freq="1h", tz="UTC")
    full = pd.DataFrame({"p": [0.5, 0.5]}, index=index)
    cut = pd.DataFrame({"p": [0.5 + 5e-7, 0.5 + 2e-6]}, index=index)
    diff = compare_rows(full, cut, index[0], index[1], atol=1e-6)
    assert diff.differing == 1 and diff.first == index[1] and diff.max_abs == pytest.approx(2e-6)


# ---------------------------------------------------------------- the audit on real strategies

@pytest.mark.parametrize("strategy", ["flat", "buy_hold", "sma_cross"])
def test_shipped_baselines_pass_the_audit(strategy):
    report = audit_lookahead(config(strategy), bars=8, seed=0)
    assert report.ok, report.format()
    assert list(report.components) == ["target", "truncated"]
    assert report.components["target"].cutoffs == 8 and report.components["target"].rows > 8
    truncated = report.components["truncated"]
    assert truncated.cutoffs + truncated.skipped == 8 and truncated.cutoffs >= 5


def test_lstm_passes_every_component_of_the_audit():
    report = audit_lookahead(config("lstm"), bars=6, seed=1)
    assert report.ok, report.format()
    assert list(report.components) == ["features", "scaler", "predictor", "target", "truncated"]
    assert all(c.cutoffs == 6 and c.rows > 0 for c in report.components.values())


def test_walk_forward_lstm_passes_every_component_across_fold_boundaries():
    walk_forward = config("lstm").replace(model={**TINY_MODEL, "walk_forward_test_bars": 60})
    report = audit_lookahead(walk_forward, bars=6, seed=3)
    assert report.ok, report.format()
    assert list(report.components) == ["features", "scaler", "predictor", "target", "truncated"]
    # cutoffs late in the span compare rows answered by several folds' models
    assert max(report.cutoffs) > pd.Timestamp(SPAN["start"], tz="UTC") + pd.Timedelta(hours=120)


def test_a_feature_reading_the_next_bar_is_flagged_in_features_and_target(peeking_registered):
    report = audit_lookahead(config("peeking_feature"), bars=8, seed=0)
    assert not report.ok
    assert report.flagged == ["features", "target", "truncated"]
    features = report.components["features"]
    assert features.differing == 8 and features.flagged_at == list(report.cutoffs)   # bar t itself, every cutoff
    assert "LOOKAHEAD: features, target, truncated" in report.format()


def test_a_schedule_anchored_to_the_last_bar_is_caught_only_by_the_truly_truncated_run():
    report = audit_lookahead(config("strategies.peeking:PeekingSchedule"), bars=8, seed=0)
    assert report.flagged == ["truncated"]              # blanking the future keeps the last bar: "target" is clean
    assert report.components["target"].ok and report.components["truncated"].differing > 0
    assert report.components["truncated"].skipped == 0


def test_a_scaler_fitted_on_the_span_is_flagged_in_scaler_but_not_features(peeking_registered):
    report = audit_lookahead(config("peeking_scaler"), bars=8, seed=0)
    assert "scaler" in report.flagged and "features" not in report.flagged
    assert report.components["scaler"].first == report.span[0]      # every scaled row moved, from the first bar


# ---------------------------------------------------------------- the command

def run_cli(argv: list[str]) -> int:
    """Parse with the real ``lstmbt`` parser, then call the command directly to see its exit status and errors."""
    from backtests.cli import make_parser

    return lookahead_command(make_parser().parse_args(["check-lookahead", *argv]))


def test_command_exits_0_when_clean_and_1_with_lookahead(peeking_registered, capsys):
    span = ["--symbol", "BTC/USDT:USDT", "--timeframe", "1h", "--start", "2024-01-01", "--end", "2024-01-05"]
    assert run_cli(["--strategy", "sma_cross", "--bars", "4", *span]) == 0
    assert "no lookahead found" in capsys.readouterr().out
    assert run_cli(["--strategy", "peeking_feature", "--bars", "4", "--sample-seed", "2", *span]) == 1
    assert "LOOKAHEAD: features, target, truncated" in capsys.readouterr().out


def test_command_refuses_bad_input_with_a_value_error():
    with pytest.raises(ValueError, match="at least 1"):
        run_cli(["--strategy", "flat", "--bars", "0"])
    with pytest.raises(ValueError, match="did you mean 'sma_cross'"):
        run_cli(["--strategy", "sma_cros", "--bars", "3"])
