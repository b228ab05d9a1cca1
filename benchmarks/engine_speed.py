"""Engine throughput, measured side by side in one run on the shipped BTC 1m data (~73,000 bars).

Prints bars/s for stock Backtrader (empty strategy on a stock PandasData feed) and for lstmbt's runs, and
their ratios. Machines here are noisy: compare the ratios, not the absolute numbers.

    python benchmarks/engine_speed.py [--repeat 3] [--skip-lstm]
"""

from __future__ import annotations

import argparse
import statistics
import time

import backtrader as bt

from backtests import BacktestConfig, DataConfig, run_backtest
from backtests.engine import load_run_data
from data_feeds.feed import FuturesData

DATA = DataConfig(symbol="BTC/USDT:USDT", timeframe="1m", start="2025-05-05", end="2025-06-23")


class Empty(bt.Strategy):
    def next(self):
        pass


def stock_pandasdata(market) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=market.candles.tz_convert(None), timeframe=bt.TimeFrame.Minutes,
                                        compression=1))
    cerebro.addstrategy(Empty)
    cerebro.run()


def our_feed_empty(market) -> None:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(FuturesData(market=market))
    cerebro.addstrategy(Empty)
    cerebro.run()


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-lstm", action="store_true")
    args = parser.parse_args()

    config = BacktestConfig(strategy="flat", data=DATA)
    market, _, _ = load_run_data(config)
    n = len(market.candles)
    cases = {  # name: (function, bars it runs)
        "stock Backtrader: empty strategy, PandasData": (lambda: stock_pandasdata(market), n),
        "lstmbt feed: empty strategy, FuturesData": (lambda: our_feed_empty(market), n),
        "lstmbt run_backtest: sma_cross (fees, funding, recording)":
            (lambda: run_backtest(config.replace(strategy="sma_cross"), market=market), n),
    }
    if not args.skip_lstm:
        lstm = lstm_config(config)
        lstm_market, t0, _ = load_run_data(lstm, _history(lstm))
        run_backtest(lstm, market=lstm_market)  # train once; later runs reuse the cached checkpoint
        cases["lstmbt run_backtest: lstm, batched Predictor (inference included)"] = \
            (lambda: run_backtest(lstm, market=lstm_market), int((lstm_market.candles.index >= t0).sum()))
    print(f"BTC/USDT:USDT 1m from the shipped sample, median of {args.repeat} runs; ratio to the first row")
    base = None
    for name, (fn, bars) in cases.items():
        seconds = timed(fn, args.repeat)
        rate = bars / seconds
        base = base or rate
        print(f"  {name:<66} {bars:>7,} bars {rate:>9,.0f} bars/s   {rate / base:5.2f}x")


def lstm_config(config: BacktestConfig) -> BacktestConfig:
    """LSTM on the 1m span: trained on the first days of the file, traded on the rest."""
    return config.replace(strategy="lstm", data={"start": "2025-05-20"},
                          model={"train_bars": 14_400, "val_bars": 4_320, "epochs": 3, "window": 48})


def _history(config: BacktestConfig) -> int:
    from strategies.registry import get_strategy

    return get_strategy("lstm").history_bars(config)


if __name__ == "__main__":
    main()
