"""The second opinion on real runs: the vectorised reference accountant, given the positions a shipped strategy
took in Backtrader on the shipped data, reproduces its equity, fees, funding and fills."""

import numpy as np
import pytest

from backtests import BacktestConfig, BrokerConfig, DataConfig, run_backtest
from backtests.engine import load_run_data
from backtests.margin import market_rules
from backtests.reference import run_reference
from data_feeds.feed import feed_arrays

SPAN = DataConfig(symbol="ETH/USDT:USDT", timeframe="1h", start="2024-01-01", end="2024-03-31")


@pytest.mark.parametrize("strategy,leverage", [("sma_cross", 1.0), ("sma_cross", 5.0), ("buy_hold", 3.0)])
def test_reference_accountant_agrees_with_backtrader_on_a_shipped_strategy(strategy, leverage):
    config = BacktestConfig(strategy=strategy, data=SPAN, broker=BrokerConfig(leverage=leverage))
    result = run_backtest(config)
    market, t0, t1 = load_run_data(config)
    span = market.slice(t0, t1)
    # the position Backtrader reached at bar i+1's open is what the strategy wanted at bar i's close
    targets = np.append(result.position.to_numpy()[1:], result.position.to_numpy()[-1])
    ref = run_reference(feed_arrays(span), targets, config.broker, rules=market_rules(SPAN.symbol))
    assert result.rejected.empty
    np.testing.assert_allclose(ref.equity, result.equity.to_numpy(), rtol=1e-9)
    assert len(ref.fills) == len(result.fills)
    np.testing.assert_allclose([f["price"] for f in ref.fills], result.fills["price"].to_numpy(), rtol=1e-12)
    assert sum(f["fee"] for f in ref.fills) == pytest.approx(result.fees_paid, rel=1e-9)
    assert float(np.sum(ref.funding)) == pytest.approx(result.funding_paid, rel=1e-9, abs=1e-9)
