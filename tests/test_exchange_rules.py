"""The market's own rules where they decide a fill: prices on the tick grid, fees from the stored rules unless the
user set them, and a contract size other than 1 refused in one line.

Tick: Binance's ``PRICE_FILTER`` (``tickSize``; ccxt ``precision.price``) puts every order price on the grid. A market
fill moved by slippage is rounded *against* the order (a buy up, a sell down): the slipped price stands for the
deepest book level the order reaches, and book levels exist only on the grid. A limit price is rounded to its
passive side (a buy down, a sell up), so it never pays worse than the strategy asked. A liquidation price is rounded
adverse to the trader (see tests/test_liquidation_protocol.py).
"""

from __future__ import annotations

import json

import backtrader as bt
import numpy as np
import pandas as pd
import pytest
from replay import make_market, run_cerebro

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from backtests.cli import main
from backtests.config import config_from_dict
from backtests.margin import fee_rates, market_rules, to_tick
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays

BTC = "BTC/USDT:USDT"


def test_to_tick_rounds_up_or_down_and_leaves_grid_prices_alone():
    assert to_tick(61_240.62345, 0.1, up=True) == pytest.approx(61_240.7)
    assert to_tick(61_240.62345, 0.1, up=False) == pytest.approx(61_240.6)
    assert to_tick(61_240.7000000001, 0.1, up=True) == pytest.approx(61_240.7)   # float noise is on the grid
    assert to_tick(0.123456, 0.0, up=True) == 0.123456                            # tick unknown: unchanged


@pytest.mark.parametrize("size, price", [(0.1, 61_240.7), (-0.1, 61_228.3)])
def test_a_slipped_market_fill_is_put_on_the_tick_grid_against_the_order(size, price):
    # open 61,234.5 with 1 bp of slippage: a buy at 61,240.62345 pays 61,240.7, a sell at 61,228.37655 gets 61,228.3
    bars = [(61_234.5, 61_300.0, 61_200.0, 61_234.5)] * 3
    config = BrokerConfig(slippage="fixed", slippage_bps=1.0)
    rules = market_rules(BTC)
    run = run_cerebro(make_market(bars), config, sizes=[size] * 3, rules=rules)
    ref = run_reference(feed_arrays(make_market(bars)), np.array([size] * 3), config, rules=rules)
    assert run.fills["price"].tolist() == [pytest.approx(price, abs=1e-9)] == [f["price"] for f in ref.fills]
    np.testing.assert_allclose(run.equity, ref.equity, rtol=1e-12)


class _Limit(bt.Strategy):
    params = (("size", 1.0), ("price", 99.97))

    def __init__(self):
        self.rejected = []

    def next(self):
        if len(self) == 1:
            (self.buy if self.p.size > 0 else self.sell)(size=abs(self.p.size), price=self.p.price,
                                                         exectype=bt.Order.Limit)


@pytest.mark.parametrize("size, limit, filled", [(2.0, 99.97, 99.9), (-2.0, 100.03, 100.1)])
def test_a_limit_price_goes_on_the_grid_on_its_passive_side(size, limit, filled):
    bars = [(100.0,) * 4, (100.0, 100.2, 99.8, 100.0), (100.0,) * 4]
    run = run_cerebro(make_market(bars), BrokerConfig(), _Limit, rules=market_rules(BTC), size=size, price=limit)
    (fill,) = run.fills.itertuples()
    assert fill.price == pytest.approx(filled) and fill.liquidity == "maker"


def _files(tmp_path, **rules):
    idx = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    close = np.linspace(2.0, 2.2, 48)
    df = pd.DataFrame({"timestamp": idx.as_unit("ms").asi8, "open": np.r_[2.0, close[:-1]], "high": close * 1.001,
                       "low": np.r_[2.0, close[:-1]] * 0.998, "close": close, "volume": 1e6})
    df.to_csv(tmp_path / "abc.csv", index=False)
    (tmp_path / "rules.json").write_text(json.dumps({"min_notional": 5.0, "tiers": [
        {"floor": 0, "cap": None, "max_leverage": 20, "maintenance_rate": 0.02}], **rules}))
    return DataConfig(symbol="ABC/USDT:USDT", start="2024-01-01", end="2024-01-02", path=str(tmp_path / "abc.csv"),
                      market_rules=str(tmp_path / "rules.json"))


def test_the_markets_stored_fees_are_used_unless_the_user_set_fees(tmp_path):
    data = _files(tmp_path, taker_fee=0.0004, maker_fee=0.0001)
    result = run_backtest(BacktestConfig(strategy="buy_hold", baselines=(), data=data))
    fill = result.fills.iloc[0]
    assert fill.fee == pytest.approx(0.0004 * fill.notional, rel=1e-12)
    assert result.config["broker"]["taker_fee"] == 0.0004 and result.config["broker"]["maker_fee"] == 0.0001
    assert result.config["broker"]["fee_source"].startswith("market rules of")
    assert "taker 0.0400%" in result.data_span["fees"] and "market rules" in result.data_span["fees"]
    mine = run_backtest(BacktestConfig(strategy="buy_hold", baselines=(), data=data,
                                       broker=BrokerConfig(taker_fee=0.001)))
    assert mine.fills.iloc[0].fee == pytest.approx(0.001 * mine.fills.iloc[0].notional, rel=1e-12)
    assert mine.config["broker"]["fee_source"] == "config"


def test_fees_written_in_a_config_or_given_as_flags_are_the_users_even_at_the_default_values():
    assert config_from_dict({"broker": {"taker_fee": 0.0005}}).broker.fee_source == "config"
    assert config_from_dict({"broker": {"leverage": 2}}).broker.fee_source == "auto"
    rules = market_rules(BTC)   # the shipped BTCUSDT snapshot: taker 0.05 %, maker 0.02 %, as the defaults
    assert fee_rates(BrokerConfig(), rules)[:2] == (0.0005, 0.0002)


def test_a_contract_size_other_than_one_is_refused_in_one_line(tmp_path, capsys):
    data = _files(tmp_path, contract_size=0.01)
    code = main(["backtest", "--strategy", "buy_hold", "--baselines", "", "--out", str(tmp_path / "out"),
                 "--symbol", data.symbol, "--start", data.start, "--end", data.end, "--data", data.path,
                 "--market-rules", data.market_rules])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "contract size 0.01" in err and "not supported" in err
