"""A user strategy that asks the LSTM every bar and trades its signal only with the trend.

``LSTMTrend`` subclasses the shipped :class:`~strategies.LSTMStrategy`, which trains its walk-forward models in
``prepare()`` on bars before the backtest span (settings from the config's ``[model]`` table) and answers, every
bar, the signal of the window ending at that bar. This class adds a trend filter: it goes long only when the LSTM
says LONG *and* the close is above its ``trend``-bar simple moving average, short only when the LSTM says SHORT
and the close is below it, and is flat otherwise. ``trend=48`` on 1h bars is a two-day average.

From the command line (this file copied anywhere as ``lstm_trend.py``)::

    lstmbt backtest --config backtests/configs/btc_lstm_1h.toml --strategy lstm_trend.py:LSTMTrend \\
        --baselines lstm,buy_hold

From Python: ``python lstm_trend.py`` (see the bottom of this file).
"""

import backtrader as bt

from strategies import LSTMStrategy, Signal


class LSTMTrend(LSTMStrategy):
    """The LSTM's LONG/SHORT only in the direction of the close against its ``trend``-bar moving average."""

    params = (("trend", 48),)

    def __init__(self):
        super().__init__()
        self.trend_ma = bt.indicators.SMA(self.data.close, period=self.p.trend)

    def target(self) -> float:
        lstm = super().target()                     # the LSTM's signal for the window ending at this bar
        above = self.data.close[0] > self.trend_ma[0]
        if lstm == Signal.LONG and above:
            return Signal.LONG
        if lstm == Signal.SHORT and not above:
            return Signal.SHORT
        return Signal.FLAT


if __name__ == "__main__":
    from backtests import Backtest, BrokerConfig, DataConfig

    data = DataConfig(symbol="BTC/USDT:USDT", timeframe="1h", start="2025-01-01", end="2025-03-31")
    model = {"window": 24, "hidden": 16, "train_bars": 4000, "val_bars": 1000, "epochs": 5}
    run = Backtest(data, LSTMTrend, broker=BrokerConfig(leverage=2), model=model, params={"trend": 48}).run(print)
    print(run.metrics[["Return [%]", "Sharpe", "Max drawdown [%]", "Trades"]].to_string())
    print("report:", run.report("runs/lstm-trend"))
