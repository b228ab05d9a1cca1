"""A plain RSI long/short strategy, written on lstmbt's public strategy contract.

Long when the RSI of the close drops below ``lower`` (oversold), short when it rises above ``upper``
(overbought), and hold the position in between. ``period=14, lower=30, upper=70`` on 1h bars: Wilder's RSI over the
last 14 closes; flat until 14 bars are known.

From the command line (this file copied anywhere as ``my_rsi.py``)::

    lstmbt backtest --strategy my_rsi.py:RsiLongShort --baselines buy_hold \\
        --symbol ETH/USDT:USDT --timeframe 1h --start 2024-01-01 --end 2024-03-31
    lstmbt check-lookahead --strategy my_rsi.py:RsiLongShort --start 2024-01-01 --end 2024-01-31

With parameters, in a TOML config: ``strategy = "my_rsi.py:RsiLongShort"`` and ``[params] period = 10``.
From Python: ``python my_rsi.py [REPORT_FOLDER]`` (see the bottom of this file).
"""

import backtrader as bt

from strategies import Signal, TargetPositionStrategy


class RsiLongShort(TargetPositionStrategy):
    """Long below RSI ``lower``, short above ``upper``, unchanged in between (flat until the first signal)."""

    params = (("period", 14), ("lower", 30.0), ("upper", 70.0))

    def __init__(self):
        super().__init__()
        if not 0 < self.p.lower < self.p.upper < 100:
            raise ValueError(f"RsiLongShort needs 0 < lower < upper < 100, got {self.p.lower}, {self.p.upper}")
        self.rsi = bt.indicators.RSI(self.data.close, period=self.p.period, safediv=True)
        self.position_wanted = Signal.FLAT

    def target(self) -> float:
        if self.rsi[0] < self.p.lower:
            self.position_wanted = Signal.LONG
        elif self.rsi[0] > self.p.upper:
            self.position_wanted = Signal.SHORT
        return self.position_wanted


if __name__ == "__main__":
    import sys

    from backtests import Backtest, BrokerConfig, DataConfig

    data = DataConfig(symbol="ETH/USDT:USDT", timeframe="1h", start="2024-01-01", end="2024-03-31")
    run = Backtest(data, RsiLongShort, broker=BrokerConfig(leverage=1), params={"period": 14}).run()
    print(run.metrics[["Return [%]", "Sharpe", "Max drawdown [%]", "Trades"]].to_string())
    if len(sys.argv) > 1:
        print("report:", run.report(sys.argv[1]))
