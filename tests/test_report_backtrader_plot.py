"""--plot-backtrader: Backtrader's own cerebro.plot() saved as a PNG on a machine without a display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
import backtrader as bt
import numpy as np
import pandas as pd
from backtests.plotting import save_backtrader_plot

index = pd.date_range("2024-01-01", periods=200, freq="h")
close = 100 + np.cumsum(np.random.default_rng(0).normal(0, 1, 200))
df = pd.DataFrame({"open": close - 0.3, "high": close + 1, "low": close - 1, "close": close, "volume": 1.0},
                  index=index)

class Flip(bt.Strategy):
    def next(self):
        if len(self) % 20 == 0:
            self.order_target_size(target=1 if (len(self) // 20) % 2 else -1)

cerebro = bt.Cerebro()
cerebro.adddata(bt.feeds.PandasData(dataname=df))
cerebro.addstrategy(Flip)
try:
    save_backtrader_plot(cerebro, sys.argv[1])
except ValueError as exc:
    print("refused before run:", exc)
cerebro.run()
save_backtrader_plot(cerebro, sys.argv[1])
import matplotlib
print("backend", matplotlib.get_backend())
"""


def test_backtrader_plot_is_saved_as_png_without_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    path = tmp_path / "backtrader.png"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused before run: cerebro has not run yet" in done.stdout
    assert "backend agg" in done.stdout.lower()
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    assert image.shape[:2] == (900, 1600) and image.std() > 0.05
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backtrader.png"]


def test_backtrader_plot_has_utc_dates_on_its_x_axis():
    """Under Agg, cerebro.plot() leaves the x axis unlabelled; ours maps bar indexes back to dates."""
    import backtrader as bt
    import matplotlib

    from backtests.plotting import _agg_pyplot, _label_dates
    from data_feeds import load_market
    from data_feeds.feed import FuturesData

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(FuturesData(market=load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-05")))
    cerebro.addstrategy(bt.Strategy)
    cerebro.run()
    _agg_pyplot()
    assert matplotlib.get_backend().lower() == "agg"
    fig = cerebro.plot(iplot=False, volume=False)[0][0]
    _label_dates(fig, cerebro.datas[0])
    bottom = fig.axes[0]
    assert bottom.xaxis.get_major_formatter()(0, 0) == "2024-01-01"
    assert bottom.xaxis.get_major_formatter()(24, 0) == "2024-01-02"


def test_backtest_says_where_it_wrote_backtraders_plot_with_value_and_trade_panels(tmp_path, monkeypatch):
    import backtrader as bt

    import backtests.plotting as plotting
    from backtests.config import BacktestConfig
    from backtests.session import run_with_baselines

    seen = []
    original = plotting.save_backtrader_plot

    def spy(cerebro, path, **kw):
        seen.extend(obs[1] for obs in cerebro.observers)     # (multi, class, args, kwargs)
        return original(cerebro, path, **kw)

    monkeypatch.setattr(plotting, "save_backtrader_plot", spy)
    config = BacktestConfig(strategy="sma_cross").replace(
        data={"symbol": "BTC/USDT:USDT", "timeframe": "1h", "start": "2024-01-01", "end": "2024-01-14"})
    lines: list[str] = []
    path = tmp_path / "backtrader.png"
    run_with_baselines(config, lines.append, plot_path=path)
    assert f"backtrader plot: {path}" in lines and path.stat().st_size > 10_000
    # the account value and the trades get panels of their own, the fills markers on the price
    assert {bt.observers.Value, bt.observers.Trades, bt.observers.BuySell} <= set(seen)
