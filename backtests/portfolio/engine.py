"""Run a portfolio backtest: several symbols, one account, one Backtrader run; returns a :class:`BacktestResult`
whose ``portfolio`` is a filled :class:`~backtests.result.PortfolioBook`.

>>> cfg = BacktestConfig(strategy="lstm_portfolio", symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), margin="cross")
>>> result = run_portfolio(cfg)                 # doctest: +SKIP
>>> result.portfolio.attribution.to_numpy().sum() == result.final_equity - result.initial_cash   # to float error

How the engine uses the broker (the seam with :mod:`backtests.portfolio.broker`):

- it asks ``make_portfolio_broker(config.broker, rules, config.margin)`` for the account's broker, ``rules`` being
  ``{symbol: TradingRules}``; each symbol's data feed is added to Cerebro under its symbol as name
  (``data._name == symbol``), in ``config.symbols`` order, before the run;
- orders are plain Backtrader market orders from the strategy (``order_target_size(data=feed, target=size)``),
  decided on a bar's close and due at that symbol's next open;
- after the run it reads ``broker.fill_log`` (dicts as :class:`~backtests.broker.FuturesBroker` writes them, plus
  ``"symbol"``; ``kind == "liquidation"`` for liquidations), ``broker.getcommissioninfo(feed).funding_log`` per
  feed (``(bt date, paid)`` pairs), ``broker.positions[feed]`` and ``broker.getvalue()`` at each close, and
  ``broker.margin_log`` (one dict per bar close: ``time``, ``margin_balance``, ``maintenance`` {symbol: USDT},
  ``ratio``), the account's margin as the broker's own liquidation engine sees it;
- ``broker.wiped_out_at`` stops the strategy trading.
"""

from __future__ import annotations

import time
from array import array
from typing import Callable

import backtrader as bt
import numpy as np
import pandas as pd

from backtests.attribution import ATTRIBUTION_TERMS
from backtests.config import BacktestConfig
from backtests.engine import _bt_times, _result_config, opening_cost, run_notices
from backtests.margin import TradingRules, market_rules
from backtests.portfolio.broker import make_portfolio_broker
from backtests.portfolio.data import PortfolioData, coverage_notice, load_portfolio_data, portfolio_coverage
from backtests.result import FILL_COLUMNS, LIQUIDATION_COLUMNS, REJECT_COLUMNS, BacktestResult, PortfolioBook
from backtests.trades import trades_from_fills
from data_feeds import parse_span
from data_feeds.feed import FuturesData
from data_feeds.hashing import frame_sha256
from strategies.contract import as_prepared
from strategies.loader import canonical_spec, display_name, spec_of, strategy_source
from strategies.portfolio import PORTFOLIO_BASELINES, PortfolioStrategy, normalised_weights

Progress = Callable[[str], None]
REFERENCE = "buy_hold"


# ---------------------------------------------------------------- strategy and broker

def portfolio_class(spec):
    """The portfolio strategy class for a name or ``file.py:Class`` spec (``buy_hold`` and ``flat`` mean their
    portfolio versions), or ``spec`` itself when it is a class; a single-symbol strategy is a one-line error."""
    from strategies.registry import get_strategy

    if isinstance(spec, type):
        cls = spec
    else:
        canon = canonical_spec(spec)
        cls = PORTFOLIO_BASELINES.get(canon) or get_strategy(canon)
    if not (isinstance(cls, type) and issubclass(cls, PortfolioStrategy)):
        name = spec if isinstance(spec, str) else getattr(spec, "__name__", spec)
        raise ValueError(f"strategy {name} trades one symbol; with --symbols use a portfolio strategy "
                         f"(lstm_portfolio, buy_hold, flat, or your own strategies.PortfolioStrategy subclass)")
    return cls


def resolve_portfolio(config: BacktestConfig, strategy=None) -> tuple[type, BacktestConfig, str]:
    """(class, config it runs with, name reports give it) for ``strategy`` (default ``config.strategy``). Another
    strategy than the config's runs with its own default params, as in :func:`backtests.engine.resolve_run`."""
    if isinstance(strategy, type):
        cls = portfolio_class(strategy)
        spec = spec_of(cls)
        same = canonical_spec(config.strategy) == spec
        return cls, (config if same else config.replace(strategy=spec, params={})), cls.__name__
    spec = canonical_spec(strategy or config.strategy)
    cls = portfolio_class(spec)
    return cls, (config if spec == config.strategy else config.replace(strategy=spec, params={})), display_name(spec)


# ---------------------------------------------------------------- the recorder

class PortfolioRecorder(bt.Analyzer):
    """Per bar of the account's clock: equity, each symbol's position and valuation close (the margin figures come
    from the broker's ``margin_log``)."""

    params = (("progress", None), ("every", 2000))
    ignores_cash_notices = True

    def start(self):
        self.symbols = [d._name for d in self.strategy.datas]
        self.equity = array("d")
        self.position = {s: array("d") for s in self.symbols}
        self.close = {s: array("d") for s in self.symbols}
        self._feeds = list(zip(self.symbols, self.strategy.datas))

    def _next(self):
        self.next()

    def _prenext(self):
        self.next()

    def _nextstart(self):
        self.next()

    def _notify_cashvalue(self, cash, value):
        pass

    def _notify_fund(self, cash, value, fundvalue, shares):
        pass

    def next(self):
        broker = self.strategy.broker
        for s, data in self._feeds:
            self.position[s].append(broker.positions[data].size)
            self.close[s].append(data.close[0] if len(data) > 0 else np.nan)
        self.equity.append(broker.getvalue())
        if self.p.progress is not None and len(self.equity) % self.p.every == 0:
            self.p.progress(len(self.equity))


# ---------------------------------------------------------------- the run

def run_rules(config: BacktestConfig, symbols) -> dict[str, TradingRules]:
    """Each symbol's market rules (stored with the data, else shipped, else flagged conservative defaults)."""
    d = config.data
    return {s: market_rules(s, d.exchange, store_dir=d.store_dir) for s in symbols}


def run_portfolio(config: BacktestConfig, *, strategy=None, data: PortfolioData | None = None,
                  progress: Progress | None = None) -> BacktestResult:
    """Backtest the portfolio strategy ``strategy`` (default ``config.strategy``; ``buy_hold``/``flat`` mean their
    portfolio versions) on ``config.symbols`` over the config's span, in one account with ``config.margin``.

    ``data``: the symbols' market data with the history the strategy needs (default: loaded by
    :func:`~backtests.portfolio.data.load_portfolio_data`). Returns the account's :class:`BacktestResult` with
    ``result.portfolio`` filled (see :class:`~backtests.result.PortfolioBook`).
    """
    if not config.symbols:
        raise ValueError("a portfolio run needs symbols (--symbols A,B or symbols = [...] in the config)")
    cls, run_config, name = resolve_portfolio(config, strategy)
    if data is None:
        data, t0, t1 = load_portfolio_data(run_config, cls.history_bars(run_config))
    else:
        t0, t1 = parse_span(config.data.start, config.data.end)
        data = PortfolioData({s: data.markets[s] for s in config.symbols})
    prepared = as_prepared(cls.prepare(run_config, data, t0, progress), f"{cls.__name__}.prepare()")
    span = data.slice(t0, t1)
    for s, m in span.markets.items():
        if m.candles.empty:
            raise ValueError(f"no {s} candles in {config.data.start} .. {config.data.end}")
    symbols = list(config.symbols)
    rules = run_rules(config, symbols)
    cerebro = bt.Cerebro(stdstats=False, runonce=True, preload=True, quicknotify=True)
    for s in symbols:
        cerebro.adddata(FuturesData(market=span.markets[s]), name=s)
    broker = make_portfolio_broker(config.broker, rules, config.margin)
    cerebro.broker = broker
    cerebro.addstrategy(cls, symbols=tuple(symbols), weights=normalised_weights(symbols, config.weights),
                        fraction=config.fraction, leverage=config.broker.leverage,
                        cost_rate=opening_cost(config.broker), qty_steps={s: r.qty_step for s, r in rules.items()},
                        min_qtys={s: r.min_qty for s, r in rules.items()}, **prepared.params)
    index = span.index
    n_bars = len(index)
    report = (lambda n: progress(f"  {name}: {n:,}/{n_bars:,} bars")) if progress else None
    cerebro.addanalyzer(PortfolioRecorder, _name="book", progress=report, every=max(n_bars // 4, 1000))
    started = time.perf_counter()
    strat = cerebro.run()[0]
    elapsed = time.perf_counter() - started
    if progress:
        progress(f"  {name}: {n_bars:,} bars x {len(symbols)} symbols in {elapsed:.2f} s")
    result = _collect(run_config, name, span, strat, broker, prepared, rules)
    result.source = strategy_source(cls, run_config.strategy)
    return result


def _fills_frame(fill_log: list[dict], index: pd.DatetimeIndex, feeds: dict) -> pd.DataFrame:
    rows = [[fill[c] for c in FILL_COLUMNS] + [fill.get("symbol")] for fill in fill_log]
    fills = pd.DataFrame(rows, columns=[*FILL_COLUMNS, "symbol"])
    fills["time"] = _bt_times(fills["time"], index)
    return fills


def _collect(config: BacktestConfig, name: str, span: PortfolioData, strat, broker, prepared,
             rules: dict[str, TradingRules]) -> BacktestResult:
    book = strat.analyzers.book
    index = span.index
    symbols = list(config.symbols)
    feeds = dict(zip(symbols, strat.datas))
    cash0 = config.broker.cash
    equity = pd.Series(np.asarray(book.equity), index=index, name="equity")
    position = pd.DataFrame({s: np.asarray(book.position[s]) for s in symbols}, index=index)
    valued = pd.DataFrame({s: np.asarray(book.close[s]) for s in symbols}, index=index)   # broker's valuation close
    target = pd.DataFrame({s: np.asarray(strat.target_log[s]) for s in symbols}, index=index)
    prices = {}
    for s in symbols:
        m = span.markets[s]
        frame = m.candles.copy()
        mark = m.mark["close"].reindex(frame.index) if m.mark is not None else frame["close"]
        frame["mark_close"] = mark.where(mark.notna(), frame["close"]).astype("float64")
        prices[s] = frame.reindex(index)                       # NaN where the symbol has no candle: never filled
    mark_close = pd.DataFrame({s: prices[s]["mark_close"] for s in symbols}, index=index)
    notional = position * mark_close

    fill_log = list(broker.fill_log)
    fills = _fills_frame(fill_log, index, feeds)
    fees = fills.groupby("time")["fee"].sum().reindex(index, fill_value=0.0).rename("fees")
    funding_by = {}
    for s in symbols:
        log = np.array(broker.getcommissioninfo(feeds[s]).funding_log, dtype="float64").reshape(-1, 2)
        paid = pd.Series(log[:, 1], index=_bt_times(log[:, 0], index)).groupby(level=0).sum()
        funding_by[s] = paid.reindex(index, fill_value=0.0).rename("funding")
    funding = sum(funding_by.values()).rename("funding")

    # each symbol's contribution to equity: its cash flows (fills, fees, funding) plus its position at the close
    contribution = {}
    for s in symbols:
        mine = fills[fills["symbol"] == s]
        flows = (-(mine["size"] * mine["price"]) - mine["fee"]).groupby(mine["time"]).sum()
        flows = flows.reindex(index, fill_value=0.0).cumsum() - funding_by[s].cumsum()
        held = (position[s] * valued[s].fillna(0.0)).where(position[s] != 0.0, 0.0)
        contribution[s] = flows + held
    contribution = pd.DataFrame(contribution, index=index)
    pnl = contribution.diff()
    pnl.iloc[0] = contribution.iloc[0]

    attribution = {s: a.as_dict() for s, a in broker.attribution_by_symbol().items()}
    attribution = pd.DataFrame(attribution).T.reindex(index=symbols, columns=list(ATTRIBUTION_TERMS))
    account_attribution = {k: float(attribution[k].sum()) for k in ATTRIBUTION_TERMS}
    account_attribution["total"] = float(sum(account_attribution.values()))

    margin_balance, maintenance, margin_ratio = _margin(broker.margin_log, index, symbols)

    liq = [f for f in fill_log if f.get("kind") == "liquidation"]
    liquidations = pd.DataFrame([[f["time"], f.get("symbol"), f["size"], f["price"], f["fee"],
                                  f["fee"] - f.get("pnl", 0.0)] for f in liq], columns=LIQUIDATION_COLUMNS)
    liquidations["time"] = _bt_times(liquidations["time"], index)

    trades = []
    for s in symbols:
        mine = fills[fills["symbol"] == s][FILL_COLUMNS]
        last = valued[s].dropna()
        t = trades_from_fills(mine.reset_index(drop=True), index, funding_by[s], float(last.iloc[-1]) if len(last)
                              else 0.0)
        trades.append(t.assign(symbol=s))
    trades = pd.concat(trades, ignore_index=True).sort_values("entry_time", kind="stable").reset_index(drop=True) \
        if any(len(t) for t in trades) else trades[0]

    rejected = pd.DataFrame([(t, size, price, reason, s) for t, s, size, price, reason in strat.rejected],
                            columns=[*REJECT_COLUMNS, "symbol"])
    rejected["time"] = _bt_times(rejected["time"], index)

    cover = portfolio_coverage(span)
    # a report banner only when a symbol lacks candles; the CLI prints the coverage line either way
    notices = [coverage_notice(cover)] if any(c["missing_bars"] for c in cover.values()) else []
    for s in symbols:
        notices += [n for n in run_notices(rules[s], span.markets[s]) if n not in notices]
    if getattr(broker, "wiped_out_at", None) is not None:
        when = _bt_times([broker.wiped_out_at], index)[0]
        notices.append(f"account wiped out at {when:%Y-%m-%d %H:%M} UTC: no trading after it")
    data_span = {
        "start": index[0].isoformat(), "end": index[-1].isoformat(), "rows": len(index), "source": span.source,
        "gaps": int(sum(c["missing_bars"] for c in cover.values())),
        "sha256": "+".join(frame_sha256(span.markets[s].candles) for s in symbols),
        "funding_rows": int(sum(len(m.funding) for m in span.markets.values())),
        "mark_prices": all(m.mark is not None for m in span.markets.values()),
        "symbols": symbols, "notices": notices,
        "coverage": {s: {"first": c["first"].isoformat() if c["first"] is not None else None,
                         "last": c["last"].isoformat() if c["last"] is not None else None,
                         "missing_bars": c["missing_bars"],
                         "gaps": [[a.isoformat(), b.isoformat()] for a, b in c["gaps"]]} for s, c in cover.items()},
    }
    first = symbols[0]
    result = BacktestResult(
        name=name, strategy=name, exchange=config.data.exchange, symbol="+".join(symbols),
        timeframe=config.data.timeframe, initial_cash=cash0, equity=equity,
        position=position[first].rename("position"), target=target[first].rename("target"),
        prices=prices[first][["open", "high", "low", "close", "volume", "mark_close"]], fills=fills, trades=trades,
        funding=funding, fees=fees, rejected=rejected, config=_result_config(config), data_span=data_span,
        attribution=account_attribution,
        models=[m.as_dict() if hasattr(m, "as_dict") else dict(m) for m in prepared.models],
        fold_boundaries=[pd.Timestamp(t) for t in prepared.fold_boundaries])
    result.portfolio = PortfolioBook(
        symbols=symbols, margin_mode=config.margin, weights=normalised_weights(symbols, config.weights),
        prices=prices, position=position, notional=notional, target=target, pnl=pnl, attribution=attribution,
        margin_balance=margin_balance, maintenance=maintenance, margin_ratio=margin_ratio,
        liquidations=liquidations, coverage=cover)
    return result


def _margin(log: list[dict], index: pd.DatetimeIndex, symbols: list[str]):
    """(margin balance, maintenance per symbol, margin ratio) at each close, from the broker's ``margin_log``."""
    times = _bt_times([e["time"] for e in log], index)
    balance = pd.Series([float(e["margin_balance"]) for e in log], index=times).groupby(level=0).last()
    maint = pd.DataFrame([{s: float(e["maintenance"].get(s, 0.0)) for s in symbols} for e in log],
                         index=times).groupby(level=0).last()
    ratio = pd.Series([float(e["ratio"]) for e in log], index=times).groupby(level=0).last()
    return (balance.reindex(index).ffill().rename("margin_balance"),
            maint.reindex(index).ffill().fillna(0.0)[symbols],
            ratio.reindex(index).ffill().fillna(0.0).rename("margin_ratio"))


# ---------------------------------------------------------------- baselines and the report folder

def run_portfolio_with_baselines(config: BacktestConfig, progress: Progress | None = None
                                 ) -> tuple[BacktestResult, list[BacktestResult]]:
    """``config.strategy`` and each portfolio-capable baseline on one load of the symbols' data, plus the report's
    buy-and-hold: the equal-weight ``buy_hold`` of the same symbols at 1x in the same margin mode (the last
    baseline; named ``buy_hold 1x`` when a leveraged ``buy_hold`` runs too)."""
    names = [config.strategy] + [b for b in config.baselines if b != config.strategy]
    classes = {}
    for n in names:
        try:
            classes[n] = portfolio_class(n)
        except ValueError:
            if n == config.strategy:
                raise
            if progress:
                progress(f"warning: baseline {display_name(n)} trades one symbol; left out of the portfolio run")
    names = [n for n in names if n in classes]
    history = max(classes[n].history_bars(config.replace(strategy=n, params={})) for n in names)
    data, t0, _ = load_portfolio_data(config, history)
    cover = portfolio_coverage(data.slice(t0, parse_span(config.data.start, config.data.end)[1]))
    if progress:
        index = data.index
        progress(f"data: {' + '.join(config.symbols)} {config.data.timeframe} {index[0]:%Y-%m-%d} .. "
                 f"{index[-1]:%Y-%m-%d %H:%M} ({len(index):,} bars incl. history), {config.margin} margin")
        progress(coverage_notice(cover))
    results = [run_portfolio(config, strategy=n, data=data, progress=progress) for n in names]
    if REFERENCE not in names or config.broker.leverage != 1.0:
        reference = run_portfolio(config.replace(broker={"leverage": 1.0}, weights=None), strategy=REFERENCE,
                                  data=data, progress=progress)
        if REFERENCE in names:
            reference.name = f"{REFERENCE} 1x"
        results.append(reference)
    if progress:
        for result in results:
            for notice in result.data_span.get("notices", [])[1:]:
                progress(f"WARNING: {result.name}: {notice}")
            if len(result.rejected):
                first = result.rejected.iloc[0]
                progress(f"warning: {result.name}: {len(result.rejected)} order(s) refused, first {first.symbol} at "
                         f"{first.time} ({first.reason}); see rejected.csv")
            if result.portfolio is not None and len(result.portfolio.liquidations):
                progress(f"warning: {result.name}: {len(result.portfolio.liquidations)} liquidation(s)")
    return results[0], results[1:]


def portfolio_run_and_report(config: BacktestConfig, out=None, progress: Progress | None = None, *,
                             force: bool = False, ledger=None, argv=None):
    """What ``lstmbt backtest --symbols ...`` does: the runs, the trial ledger and the report folder (written by
    :func:`backtests.persist.write_run_folder`, i.e. ``reports.write_report`` with ``result.portfolio`` set and
    the equal-weight buy-and-hold as the reference baseline). Returns (folder, result, baselines)."""
    from pathlib import Path

    from backtests import ledger as trial_ledger
    from backtests.manifest import build_manifest
    from backtests.persist import write_run_folder
    from backtests.session import check_out_folder, default_run_dir, staged_folder

    started = time.perf_counter()
    folder = Path(out) if out else default_run_dir(config)
    check_out_folder(folder, force=force)
    with staged_folder(folder, force=force) as tmp:
        main, baselines = run_portfolio_with_baselines(config, progress)
        path = trial_ledger.record_results("backtest", [main, *baselines], ledger)
        trials = trial_ledger.trials_for(main, path)
        main.extras["trials"] = {"count": trials.count, "sharpes": list(trials.sharpes), "ledger": str(path)}
        write_run_folder(tmp, main, baselines, build_manifest(config, main, baselines, argv))
    if progress:
        progress(f"report: {folder} ({time.perf_counter() - started:.1f} s in all)")
    return folder, main, baselines


def refuse_portfolio_without_symbols(strategy) -> None:
    """A portfolio strategy run on one symbol (no ``--symbols``) is a one-line error."""
    from strategies.registry import get_strategy

    cls = strategy if isinstance(strategy, type) else get_strategy(canonical_spec(strategy))
    if isinstance(cls, type) and issubclass(cls, PortfolioStrategy):
        raise ValueError(f"{display_name(spec_of(cls)) if not isinstance(strategy, str) else display_name(strategy)} "
                         f"is a portfolio strategy: give the symbols it trades, e.g. --symbols "
                         f"BTC/USDT:USDT,ETH/USDT:USDT")


def portfolio_backtest_command(config: BacktestConfig, args, progress: Progress) -> int:
    """``lstmbt backtest --symbols ...``: check, run, write the report folder, print the verdict and the table."""
    from backtests.session import check_out_folder, default_run_dir
    from reports import format_metrics_table
    from reports.sections import verdict_text

    portfolio_class(config.strategy)
    check_out_folder(args.out or default_run_dir(config), force=args.force)
    weights = normalised_weights(config.symbols, config.weights)
    shares = ", ".join(f"{s} {w:.0%}" for s, w in weights.items())
    progress(f"lstmbt backtest: {display_name(config.strategy)} on {' + '.join(config.symbols)} "
             f"{config.data.timeframe} {config.data.start} .. {config.data.end}, {config.margin} margin, "
             f"leverage {config.broker.leverage:g}, weights {shares}")
    folder, main, baselines = portfolio_run_and_report(config, args.out, progress, force=args.force,
                                                       ledger=getattr(args, "ledger", None))
    print()
    print(verdict_text(folder / "metrics.json", main))
    print()
    print(format_metrics_table([main, *baselines]))
    book = main.portfolio
    print("\nby symbol (USDT): " + "; ".join(f"{s} {book.attribution.loc[s].sum():+,.2f}" for s in book.symbols)
          + (f"; {len(book.liquidations)} liquidation(s)" if len(book.liquidations) else ""))
    print(f"\nreport: {folder / 'report.html'}")
    return 0


__all__ = ["PortfolioRecorder", "portfolio_backtest_command", "refuse_portfolio_without_symbols", "portfolio_class", "portfolio_run_and_report", "resolve_portfolio", "run_portfolio",
           "run_portfolio_with_baselines", "run_rules"]
