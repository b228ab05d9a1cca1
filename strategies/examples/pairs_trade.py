"""A user portfolio strategy: trade the spread between two perpetuals (a pairs trade), long one and short the other.

``PairTrade`` watches the log price ratio ``log(close_A / close_B)`` of the first two symbols over the last
``lookback`` bars. When the ratio is ``entry`` standard deviations above its mean, A is rich against B: short A, long
B; when it is ``entry`` below, long A, short B; back within ``exit`` deviations of the mean, flat. It only decides on
bars where both symbols have their candle (``has_candle``); the engine never trades a symbol on a bar without one.

From the command line (this file copied anywhere as ``pairs_trade.py``)::

    lstmbt backtest --strategy pairs_trade.py:PairTrade --symbols BTC/USDT:USDT,ETH/USDT:USDT --timeframe 1h \\
        --start 2025-01-01 --end 2025-03-31 --margin isolated --leverage 2

From Python: ``python pairs_trade.py`` (see the bottom of this file).
"""

import math

from strategies import PortfolioStrategy


class PairTrade(PortfolioStrategy):
    """Mean reversion of the log price ratio of the first two symbols (see the module docstring)."""

    params = (("lookback", 48), ("entry", 1.5), ("exit", 0.25))

    def target(self):
        a, b = self.symbols[:2]
        if not (self.has_candle(a) and self.has_candle(b)):
            return {}
        n = self.p.lookback
        if len(self.feed(a)) < n or len(self.feed(b)) < n:
            return {}
        closes_a, closes_b = self.feed(a).close.get(size=n), self.feed(b).close.get(size=n)   # the last n bars
        ratio = [math.log(x / y) for x, y in zip(closes_a, closes_b)]
        mean = sum(ratio) / n
        sd = math.sqrt(sum((r - mean) ** 2 for r in ratio) / (n - 1))
        if sd == 0:
            return {}
        z = (ratio[-1] - mean) / sd
        if z > self.p.entry:
            return {a: -1.0, b: 1.0}
        if z < -self.p.entry:
            return {a: 1.0, b: -1.0}
        if abs(z) < self.p.exit:
            return {a: 0.0, b: 0.0}
        return {}                                   # in between: keep the standing targets


if __name__ == "__main__":
    from backtests import BacktestConfig, BrokerConfig, DataConfig
    from backtests.portfolio.engine import run_portfolio

    config = BacktestConfig(strategy="pairs_trade", symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), margin="isolated",
                            data=DataConfig(timeframe="1h", start="2025-01-01", end="2025-03-31"),
                            broker=BrokerConfig(leverage=2))
    result = run_portfolio(config, strategy=PairTrade)
    print(result.portfolio.attribution)
    print(f"final equity {result.final_equity:,.2f} USDT")
