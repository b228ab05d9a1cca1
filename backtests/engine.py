"""Run one backtest: load data, prepare the strategy, run Cerebro, return a :class:`BacktestResult`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import backtrader as bt
import numpy as np
import pandas as pd

from backtests.broker import make_broker
from backtests.config import BacktestConfig, BrokerConfig
from backtests.margin import market_rules
from backtests.recorder import Recorder
from backtests.result import FILL_COLUMNS, REJECT_COLUMNS, BacktestResult
from backtests.trades import trades_from_fills
from data_feeds import DataError, MarketData, load_market, parse_span
from data_feeds.feed import FuturesData
from data_feeds.hashing import frame_sha256
from data_feeds.timeframes import timeframe_delta
from strategies.registry import get_strategy

Progress = Callable[[str], None]


def opening_cost(broker: BrokerConfig) -> float:
    """Fee plus expected slippage per unit of notional when opening at market: 0.0005 + 1 bp = 0.0006.
    The range/volume slippage models depend on the bar, so only their fee is counted."""
    return broker.taker_fee + (broker.slippage_bps / 10_000 if broker.slippage == "fixed" else 0.0)


def load_run_data(config: BacktestConfig, history_bars: int = 0) -> tuple[MarketData, pd.Timestamp, pd.Timestamp]:
    """Market data for the run's span plus ``history_bars`` bars before it (for model training and warm-up)."""
    d = config.data
    t0, t1 = parse_span(d.start, d.end)
    first = t0 - history_bars * timeframe_delta(d.timeframe)
    market = load_market(d.exchange, d.symbol, d.timeframe, first, d.end, data_path=d.path,
                         funding_path=d.funding_path, store_dir=d.store_dir)
    span = market.candles.index[market.candles.index >= t0]
    if len(span) < 3:
        raise DataError(f"only {len(span)} bar(s) of {d.symbol} {d.timeframe} in {d.start} .. {d.end}; need at least 3")
    if history_bars and market.candles.index[0] > first:
        have = int((market.candles.index < t0).sum())
        raise DataError(f"{config.strategy} needs {history_bars} bars of history before {d.start} to train; "
                        f"the data has {have} (starts {market.candles.index[0]:%Y-%m-%d}); move --start later")
    return market, t0, t1


def strategy_class(strategy):
    """The strategy class for a registered name, or ``strategy`` itself when it is already a class."""
    return strategy if isinstance(strategy, type) else get_strategy(strategy)


def run_backtest(config: BacktestConfig, *, strategy=None, progress: Progress | None = None,
                 market: MarketData | None = None, plot_path: str | Path | None = None) -> BacktestResult:
    """Backtest ``strategy`` (default ``config.strategy``) on the config's data span; ``plot_path`` also saves
    Backtrader's own plot of the run there.

    >>> result = run_backtest(BacktestConfig(strategy="buy_hold"))      # doctest: +SKIP
    >>> result.final_equity                                              # doctest: +SKIP
    """
    cls = strategy_class(strategy or config.strategy)
    name = cls.__name__ if isinstance(strategy, type) else (strategy or config.strategy)
    # baselines run with their own default parameters; [params] belongs to the main strategy
    run_config = config if name == config.strategy else config.replace(strategy=name, params={})
    if market is None:
        market, t0, t1 = load_run_data(run_config, cls.history_bars(run_config))
    else:
        t0, t1 = parse_span(config.data.start, config.data.end)
    params = cls.prepare(run_config, market, t0, progress)
    extras = params.pop("extras", {})
    span = market.slice(t0, t1)

    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    cerebro.adddata(FuturesData(market=span))
    broker, comminfo = make_broker(config.broker)
    cerebro.broker = broker
    rules = market_rules(config.data.symbol)
    cerebro.addstrategy(cls, fraction=config.fraction, leverage=config.broker.leverage, cost_rate=opening_cost(config.broker),
                        qty_step=rules.qty_step,
                        min_qty=rules.min_qty, **params)
    n_bars = len(span.candles)
    report = (lambda n: progress(f"  {name}: {n:,}/{n_bars:,} bars")) if progress else None
    cerebro.addanalyzer(Recorder, _name="recorder", progress=report, every=max(n_bars // 4, 1000))
    started = time.perf_counter()
    strat = cerebro.run()[0]
    if plot_path:
        from backtests.plotting import save_backtrader_plot

        save_backtrader_plot(cerebro, plot_path)
    elapsed = time.perf_counter() - started
    if progress:
        progress(f"  {name}: {n_bars:,} bars in {elapsed:.2f} s ({n_bars / max(elapsed, 1e-9):,.0f} bars/s)")
    result = _collect(run_config, name, span, strat, comminfo, params)
    result.extras.update(extras)
    return result


def _bt_times(values, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Backtrader float dates back to the exact bar timestamps of ``index``."""
    ns = np.rint((np.asarray(values, dtype="float64") - 719163.0) * 86_400).astype("int64") * 1_000_000_000
    out = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True)).as_unit(index.unit)
    return index[index.get_indexer(out, method="nearest")] if len(out) else out


def _collect(config: BacktestConfig, name: str, span: MarketData, strat, comminfo, params: dict) -> BacktestResult:
    rec = strat.analyzers.recorder
    index = span.candles.index
    equity = pd.Series(rec.equity, index=index, name="equity")
    position = pd.Series(rec.position, index=index, name="position")
    target = pd.Series(strat.targets, index=index, name="target")

    fills = pd.DataFrame(rec.fills, columns=FILL_COLUMNS)
    fills["time"] = _bt_times(fills["time"], index)
    fees = fills.groupby("time")["fee"].sum().reindex(index, fill_value=0.0).rename("fees")

    funding_log = np.array(comminfo.funding_log, dtype="float64").reshape(-1, 2)
    funding = pd.Series(funding_log[:, 1], index=_bt_times(funding_log[:, 0], index)).groupby(level=0).sum()
    funding = funding.reindex(index, fill_value=0.0).rename("funding")

    rejected = pd.DataFrame(strat.rejected, columns=REJECT_COLUMNS)
    rejected["time"] = _bt_times(rejected["time"], index)
    trades = trades_from_fills(fills, index, funding, float(span.candles["close"].iloc[-1]))

    predictor = params.get("predictor")
    predictions = predictor.probability_frame() if predictor is not None else None
    data_span = {
        "start": index[0].isoformat(), "end": index[-1].isoformat(), "rows": len(index),
        "source": span.source, "gaps": int(span.gaps["missing"].sum()) if len(span.gaps) else 0,
        "sha256": frame_sha256(span.candles), "funding_rows": len(span.funding),
        "mark_prices": span.mark is not None,
    }
    return BacktestResult(
        name=name, strategy=name, exchange=config.data.exchange, symbol=config.data.symbol,
        timeframe=config.data.timeframe, initial_cash=config.broker.cash, equity=equity, position=position,
        target=target, prices=span.candles, fills=fills, trades=trades, funding=funding, fees=fees,
        rejected=rejected, config=_result_config(config), data_span=data_span, predictions=predictions,
        attribution=rec.attribution.as_dict())


def _result_config(config: BacktestConfig) -> dict:
    """The config as the result records it: without the model cache folder, which never changes a result."""
    out = config.to_dict()
    out.pop("cache_dir", None)
    return out
