"""Run one backtest: load data, prepare the strategy, run Cerebro, return a :class:`BacktestResult`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import backtrader as bt
import numpy as np
import pandas as pd

from backtests.broker import make_broker
from backtests.config import BacktestConfig, BrokerConfig
from backtests.margin import TradingRules, fee_rates, market_rules
from backtests.recorder import Recorder
from backtests.result import FILL_COLUMNS, REJECT_COLUMNS, BacktestResult
from backtests.trades import trades_from_fills
from data_feeds import DataError, MarketData, load_market, parse_span
from data_feeds.loader import check_coverage
from data_feeds.coverage import describe, funding_gaps, mark_gaps
from data_feeds.feed import FuturesData, unpriced_settlements
from data_feeds.hashing import frame_sha256
from data_feeds.timeframes import timeframe_delta
from strategies.contract import Prepared, as_prepared
from strategies.loader import canonical_spec, display_name, spec_of, strategy_source
from strategies.registry import get_strategy, names_class

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
                         funding_path=d.funding_path, mark_path=d.mark_path, store_dir=d.store_dir)
    span = market.candles.index[market.candles.index >= t0]
    if len(span) < 3:
        raise DataError(f"only {len(span)} bar(s) of {d.symbol} {d.timeframe} in {d.start} .. {d.end}; need at least 3")
    if not history_bars:     # a span that starts before the data is an error, never silently cut
        check_coverage(market.candles.index, t0, t1, d.timeframe, f"{d.symbol} {d.timeframe} from {market.source}",
                       market.candles.attrs.get("covers"))
    if history_bars and market.candles.index[0] > first:
        have = int((market.candles.index < t0).sum())
        raise DataError(f"{config.strategy} needs {history_bars} bars of history before {d.start} to train; "
                        f"the data has {have} (starts {market.candles.index[0]:%Y-%m-%d}); move --start later")
    return market, t0, t1


def resolve_run(config: BacktestConfig, strategy=None) -> tuple[type, BacktestConfig, str]:
    """The strategy class to run, the config it runs with and the name reports give it, for ``strategy``: a
    registered name, a ``file.py:Class`` / ``pkg.mod:Class`` spec, a TargetPositionStrategy subclass, or None
    for ``config.strategy``. The config's ``[params]`` belong to ``config.strategy``: another strategy (a
    baseline) runs with its own defaults."""
    if isinstance(strategy, type):
        cls = strategy
        spec = spec_of(cls)
        loaded = spec != f"{cls.__module__}:{cls.__qualname__}"       # from a user's file
        label = display_name(spec) if loaded else cls.__name__
        if names_class(config.strategy, cls):
            return cls, config, label if config.strategy == spec else display_name(config.strategy)
        return cls, config.replace(strategy=spec, params={}), label
    spec = canonical_spec(strategy or config.strategy)
    cls = get_strategy(spec)
    return cls, (config if spec == config.strategy else config.replace(strategy=spec, params={})), display_name(spec)


def prepare_strategy(cls, config: BacktestConfig, market: MarketData, span_start: pd.Timestamp,
                     progress: Progress | None = None) -> Prepared:
    """``cls.prepare(...)`` as a :class:`~strategies.contract.Prepared` (a strategy written before the typed
    record may still return a dict of params)."""
    return as_prepared(cls.prepare(config, market, span_start, progress), f"{cls.__name__}.prepare()")


def strategy_class(strategy):
    """The strategy class for a registered name or a ``file.py:Class`` spec, or ``strategy`` itself when it is
    already a class."""
    return strategy if isinstance(strategy, type) else get_strategy(canonical_spec(strategy))


def run_backtest(config: BacktestConfig, *, strategy=None, progress: Progress | None = None,
                 market: MarketData | None = None, plot_path: str | Path | None = None,
                 rules: TradingRules | None = None) -> BacktestResult:
    """Backtest ``strategy`` (default ``config.strategy``; a name, a ``file.py:Class`` spec or a strategy class)
    on the config's data span; ``plot_path`` also saves Backtrader's own plot of the run there.
    ``rules``: the market rules already read (a compare cell carries them to its worker); default: read them.

    >>> result = run_backtest(BacktestConfig(strategy="buy_hold"))      # doctest: +SKIP
    >>> result = run_backtest(config, strategy=RsiLongShort)             # doctest: +SKIP
    >>> result.final_equity                                              # doctest: +SKIP
    """
    rules = run_rules(config) if rules is None else rules     # given: read by the caller (a compare cell)
    config = with_market_fees(config, rules)
    cls, run_config, name = resolve_run(config, strategy)
    if market is None:
        market, t0, t1 = load_run_data(run_config, cls.history_bars(run_config))
    else:
        t0, t1 = parse_span(config.data.start, config.data.end)
    prepared = prepare_strategy(cls, run_config, market, t0, progress)
    params = prepared.params
    span = market.slice(t0, t1)

    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    cerebro.adddata(FuturesData(market=span))
    broker, comminfo = make_broker(config.broker, rules=rules)
    cerebro.broker = broker
    cerebro.addstrategy(cls, fraction=config.fraction, leverage=config.broker.leverage, cost_rate=opening_cost(config.broker),
                        qty_step=rules.qty_step,
                        min_qty=rules.min_qty, **params)
    n_bars = len(span.candles)
    report = (lambda n: progress(f"  {name}: {n:,}/{n_bars:,} bars")) if progress else None
    cerebro.addanalyzer(Recorder, _name="recorder", progress=report, every=max(n_bars // 4, 1000))
    if plot_path:      # Backtrader's own plot shows the account value, trades and fills only through observers
        cerebro.addobserver(bt.observers.Value)
        cerebro.addobserver(bt.observers.Trades)
        cerebro.addobserver(bt.observers.BuySell, barplot=True)
    started = time.perf_counter()
    strat = cerebro.run()[0]
    if plot_path:
        from backtests.plotting import save_backtrader_plot

        save_backtrader_plot(cerebro, plot_path)
    elapsed = time.perf_counter() - started
    if progress:
        progress(f"  {name}: {n_bars:,} bars in {elapsed:.2f} s ({n_bars / max(elapsed, 1e-9):,.0f} bars/s)")
    result = _collect(run_config, name, span, strat, comminfo, prepared)
    result.source = strategy_source(cls, run_config.strategy)
    _record_rules(result, rules, broker, span)
    return result


def run_rules(config: BacktestConfig) -> TradingRules:
    """The traded market's rules: ``--market-rules FILE``, else stored with the data, else shipped, else the
    flagged conservative defaults (see :func:`data_feeds.market_rules.load_rules`)."""
    d = config.data
    return market_rules(d.symbol, d.exchange, store_dir=d.store_dir, path=d.market_rules)


def with_market_fees(config: BacktestConfig, rules: TradingRules) -> BacktestConfig:
    """``config`` with the fees the run uses written in (see :func:`backtests.margin.fee_rates`): the market's
    stored maker/taker fees when the user set none, and ``fee_source`` naming where they come from."""
    if config.broker.fee_source != "auto":
        return config
    taker, maker, source = fee_rates(config.broker, rules)
    return config.replace(broker={"taker_fee": taker, "maker_fee": maker, "fee_source": source})


def run_notices(rules: TradingRules, market: MarketData) -> list[str]:
    """What the user must know about the inputs of a run, one line each (CLI, report banner, metrics.json):
    default market rules, settlements without a mark price at their instant."""
    out = []
    if rules.rules is not None and rules.rules.is_default:
        out.append(f"NO MARKET RULES for {market.exchange} {market.symbol}: ran on conservative defaults "
                   f"({rules.rules.describe(source=False).split(': ', 1)[1]}); pass --market-rules FILE or "
                   f"download the market")
    elif rules.rules is not None and "conservative defaults" in rules.rules.tiers_note:
        out.append(f"NO LEVERAGE TIERS for {market.exchange} {market.symbol} ({rules.rules.tiers_note}): "
                   f"maintenance margin and leverage limits use conservative default tiers")
    gaps = funding_gaps(market)
    if gaps:
        out.append(f"NO FUNDING DATA for {market.symbol} in {describe(gaps)}: no funding booked there "
                   f"(pass --funding-data or download funding)")
    gaps = mark_gaps(market)
    if gaps:
        out.append(f"NO MARK PRICES for {market.symbol} in {describe(gaps)}: liquidation checks and funding use "
                   f"last prices there (pass --mark-data or download mark candles)")
    unpriced = unpriced_settlements(market)
    if len(unpriced):
        out.append(f"{len(unpriced)} funding settlement(s) inside bars had no mark price at their instant "
                   f"({unpriced[0]:%Y-%m-%d %H:%M} .. {unpriced[-1]:%Y-%m-%d %H:%M}); priced at their bar's open")
    return out


def _record_rules(result: BacktestResult, rules: TradingRules, broker, span: MarketData) -> None:
    """Put the market rules used, the run's notices and the wiped-out time into ``result.data_span``."""
    if rules.rules is not None:
        r = rules.rules
        # links stay in the rules file: the report page is self-contained (no URL in it)
        result.data_span["market_rules"] = {"summary": re.sub(r"\s*https?://\S+", "", r.describe()),
                                            "fetched": r.fetched, "is_default": r.is_default}
    result.data_span["fees"] = (f"taker {broker._taker:.4%}, maker {broker._maker:.4%} of notional "
                                f"({broker.fee_source})")
    notices = run_notices(rules, span)
    if broker.wiped_out_at is not None:
        when = _bt_times([broker.wiped_out_at], span.candles.index)[0]
        result.data_span["wiped_out_at"] = when.isoformat()
        notices.append(f"account wiped out at {when:%Y-%m-%d %H:%M} UTC: equity could no longer open the market's "
                       f"minimum position; no trading after it, and risk ratios of this run are not meaningful")
    result.data_span["notices"] = notices


def _bt_times(values, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Backtrader float dates back to the exact bar timestamps of ``index``."""
    ns = np.rint((np.asarray(values, dtype="float64") - 719163.0) * 86_400).astype("int64") * 1_000_000_000
    out = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True)).as_unit(index.unit)
    return index[index.get_indexer(out, method="nearest")] if len(out) else out


def _collect(config: BacktestConfig, name: str, span: MarketData, strat, comminfo,
             prepared: Prepared) -> BacktestResult:
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

    source = prepared.signal_source
    predictions = source.probability_frame() if source is not None and hasattr(source, "probability_frame") else None
    data_span = {
        "start": index[0].isoformat(), "end": index[-1].isoformat(), "rows": len(index),
        "source": span.source, "gaps": int(span.gaps["missing"].sum()) if len(span.gaps) else 0,
        "sha256": frame_sha256(span.candles), "funding_rows": len(span.funding),
        "mark_prices": span.mark is not None,
    }
    return BacktestResult(
        name=name, strategy=name, exchange=config.data.exchange, symbol=config.data.symbol,
        timeframe=config.data.timeframe, initial_cash=config.broker.cash, equity=equity, position=position,
        target=target, prices=_prices(span), fills=fills, trades=trades, funding=funding, fees=fees,
        rejected=rejected, config=_result_config(config), data_span=data_span, predictions=predictions,
        attribution=rec.attribution.as_dict(),
        models=[m.as_dict() if hasattr(m, "as_dict") else dict(m) for m in prepared.models],
        fold_boundaries=[pd.Timestamp(t) for t in prepared.fold_boundaries])


def _prices(span: MarketData) -> pd.DataFrame:
    """The span's candles, plus ``mark_close`` (the mark-price close, the last close where no mark candle exists)
    when the market has mark prices: the report's equity at the mark price is built from it."""
    if span.mark is None:
        return span.candles
    out = span.candles.copy()
    mark = span.mark["close"].reindex(out.index)
    out["mark_close"] = mark.where(mark.notna(), out["close"]).astype("float64")
    return out


def _result_config(config: BacktestConfig) -> dict:
    """The config as the result records it: without the model cache folder, which never changes a result."""
    out = config.to_dict()
    out.pop("cache_dir", None)
    return out
