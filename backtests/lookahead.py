"""Lookahead audit (``lstmbt check-lookahead``): does any decision change when the future is cut off?

For a strategy on a span, the audit runs the backtest once on all the data, then for K sampled bars t (seeded)
cuts every input after t and runs again. Whatever the strategy knew at bar t must not change:

- ``target``: the target position decided at every bar <= t (exact; works for every strategy). The backtest after
  a cutoff runs on the same bars with the ones after t made up (flat, see :func:`blank_future`), because Backtrader
  indicators cannot run on fewer bars than their period;
- ``truncated``: the same targets from a backtest on the data truly truncated at t (the bar index ends at t). This
  catches a strategy that depends on where the data ends (a schedule counting bars to the last one, Backtrader's
  ``buflen()``), which the blanked future keeps. A cut too short for the strategy to run on (an SMA(50) on 30 bars)
  is skipped and counted;
- ``features``, ``scaler``, ``predictor``: for strategies whose ``prepare()`` returns a :class:`Probe` in
  ``Prepared.probe`` (or a signal source carrying trained models, like the LSTM's Predictor), the per-bar feature
  rows, their scaled values and the model's probabilities for bars <= t.

Truncating at t (see :func:`truncate_market`) keeps candles and mark candles opening at or before t and funding
settlements at or before t's close (t + one bar), which is what the features count as settled by that close.

>>> report = audit_lookahead(BacktestConfig(strategy="sma_cross", data=...), bars=50)   # doctest: +SKIP
>>> report.ok, report.flagged                                                         # doctest: +SKIP
(True, [])
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np
import pandas as pd

from data_feeds import MarketData, parse_span
from data_feeds.timeframes import timeframe_delta
from data_feeds.validate import find_gaps
from strategies.contract import Prepared
from strategies.loader import display_name
from strategies.registry import get_strategy

if TYPE_CHECKING:
    from backtests.config import BacktestConfig

Progress = Callable[[str], None]

COMPONENTS = ("features", "scaler", "predictor", "target", "truncated")
"""Order in which components are reported; a probe may add others after these."""

TOLERANCE = {"predictor": 1e-6}
"""Absolute tolerance per component (0 when absent): float32 batches of different sizes may differ in the last bits."""


class Probe(Protocol):
    """What the audit reads of a prepared strategy besides its targets.

    ``components(market, span_start)`` returns, per component name, a frame indexed by bar open time covering the
    bars of ``market`` at or after ``span_start`` (e.g. ``{"features": ..., "scaler": ..., "predictor": ...}``). It
    must be computed from ``market`` alone, as the strategy would compute it.
    """

    def components(self, market: MarketData, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]: ...


class PredictorProbe:
    """Features, scaled features and probabilities of a trained LSTM model over a market (a fresh batched Predictor)."""

    def __init__(self, trained) -> None:
        self.trained = trained

    def components(self, market: MarketData, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]:
        from strategies.lstm import Predictor
        from strategies.lstm.features import compute_features

        trained = self.trained
        feats = compute_features(market.candles, market.funding, trained.feature_names, bar=trained.bar)
        scaled = pd.DataFrame(trained.scaler.transform(feats), index=feats.index, columns=feats.columns)
        predictor = Predictor(trained, mode="batched")
        predictor.attach(market.candles, market.funding, span_start)
        in_span = feats.index >= span_start
        return {"features": feats[in_span], "scaler": scaled[in_span], "predictor": predictor.probability_frame()}


class WalkForwardProbe:
    """The same components for a walk-forward predictor: each bar scaled by, and predicted with, its own fold's model."""

    def __init__(self, models: list) -> None:
        self.models = models  # (Fold, TrainedModel) pairs, in time order

    def components(self, market: MarketData, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]:
        from strategies.lstm.features import compute_features
        from strategies.lstm.walkforward import WalkForwardPredictor

        first = self.models[0][1]
        feats = compute_features(market.candles, market.funding, first.feature_names, bar=first.bar)
        feats = feats[feats.index >= span_start]
        starts = pd.DatetimeIndex([fold.train_end for fold, _ in self.models])
        fold_of = starts.searchsorted(feats.index, side="right") - 1
        scaled = np.full(feats.shape, np.nan)
        for k, (_, trained) in enumerate(self.models):
            rows = fold_of == k
            if rows.any():
                scaled[rows] = trained.scaler.transform(feats[rows])
        predictor = WalkForwardPredictor(self.models, mode="batched")
        predictor.attach(market.candles, market.funding, span_start)
        return {"features": feats, "scaler": pd.DataFrame(scaled, index=feats.index, columns=feats.columns),
                "predictor": predictor.probability_frame()}


def probe_of(prepared: Prepared) -> Probe | None:
    """The audit's probe of a prepared strategy: ``prepared.probe`` when the strategy gives one, else a
    :class:`PredictorProbe` (or :class:`WalkForwardProbe`) for a signal source that carries trained model(s)
    (``.trained``, or ``.models`` as (fold, model) pairs), else None (targets only)."""
    if prepared.probe is not None:
        return prepared.probe
    source = prepared.signal_source
    trained = getattr(source, "trained", None)
    if trained is not None:
        return PredictorProbe(trained)
    models = getattr(source, "models", None)
    return WalkForwardProbe(models) if models else None


# ---------------------------------------------------------------- pure pieces

def truncate_market(market: MarketData, t: pd.Timestamp) -> MarketData:
    """``market`` as known at bar t's close: candles and mark candles opening at or before t, funding settlements
    at or before t + one bar (a settlement at exactly the close counts as settled, as the ``funding`` feature says).

    1h bars, t = 07:00: the 07:00 candle stays, 08:00 goes; the 08:00 settlement stays, 16:00 goes.
    """
    close = t + timeframe_delta(market.timeframe)
    candles = market.candles[market.candles.index <= t]
    mark = None if market.mark is None else market.mark[market.mark.index <= t]
    funding = market.funding[market.funding.index <= close]
    return MarketData(market.exchange, market.symbol, market.timeframe, candles, funding, mark, market.source,
                      find_gaps(candles.index, market.timeframe))


def blank_future(market: MarketData, t: pd.Timestamp) -> MarketData:
    """:func:`truncate_market` followed by a made-up, flat future: every later bar of ``market`` keeps its time but
    opens, highs, lows and closes at bar t's close with zero volume (mark candles likewise), and no funding settles.

    Backtrader cannot compute an indicator on fewer bars than its period (an SMA(50) on 30 bars raises), so the
    backtest after a cutoff runs on the full index with nothing of the real future left in it.
    """
    cut = truncate_market(market, t)
    later = market.candles.index[market.candles.index > t]
    if len(later) == 0:
        return cut
    price = float(cut.candles["close"].iloc[-1])
    flat = pd.DataFrame({col: price for col in ("open", "high", "low", "close")}, index=later)
    flat["volume"] = 0.0
    candles = pd.concat([cut.candles, flat.reindex(columns=cut.candles.columns, fill_value=0.0)])
    mark = None if cut.mark is None else pd.concat([cut.mark, flat.reindex(columns=cut.mark.columns,
                                                                          fill_value=0.0)])
    return MarketData(cut.exchange, cut.symbol, cut.timeframe, candles, cut.funding, mark, cut.source, market.gaps)


def sample_cutoffs(index: pd.DatetimeIndex, bars: int, seed: int) -> pd.DatetimeIndex:
    """``bars`` distinct bars of ``index`` drawn with ``seed`` (all of them when there are fewer), in time order."""
    if bars < 1:
        raise ValueError(f"--bars must be at least 1, got {bars}")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(index), size=min(bars, len(index)), replace=False)
    return index[np.sort(picked)]


@dataclass(frozen=True)
class Diff:
    """One comparison of a component at one cutoff: rows compared, rows differing, first differing bar, max |diff|."""

    rows: int
    differing: int
    first: pd.Timestamp | None
    max_abs: float


def compare_rows(full: pd.DataFrame, cut: pd.DataFrame, start: pd.Timestamp, t: pd.Timestamp,
                 atol: float = 0.0) -> Diff:
    """Compare the rows of ``full`` in ``[start, t]`` with the same bars of ``cut``.

    A bar missing from ``cut``, a NaN on one side only, or a value more than ``atol`` away counts as differing;
    NaN on both sides is equal. ``max_abs`` is inf when a NaN or a missing bar is among the differences.
    """
    want = full[(full.index >= start) & (full.index <= t)]
    got = cut.reindex(index=want.index, columns=want.columns)
    a = want.to_numpy(np.float64)
    b = got.to_numpy(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        gap = np.where(both_nan, 0.0, np.abs(a - b))
    gap = np.where(np.isnan(gap), np.inf, gap)
    bad = (gap > atol).any(axis=1) if gap.ndim == 2 and gap.shape[1] else np.zeros(len(want), bool)
    first = want.index[np.argmax(bad)] if bad.any() else None
    return Diff(len(want), int(bad.sum()), first, float(gap[bad].max()) if bad.any() else 0.0)


@dataclass
class ComponentCheck:
    """Totals for one component over all cutoffs.

    ``cutoffs``: bars t at which it was checked; ``rows``: bar rows compared in all; ``differing``: rows that
    changed when the future was cut; ``flagged_at``: the cutoffs where anything changed; ``first``: the earliest
    differing bar; ``max_abs``: the largest absolute difference (inf: a NaN or missing value on one side).
    """

    name: str
    cutoffs: int = 0
    rows: int = 0
    differing: int = 0
    first: pd.Timestamp | None = None
    max_abs: float = 0.0
    flagged_at: list[pd.Timestamp] = field(default_factory=list)
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.differing == 0

    def add(self, t: pd.Timestamp, diff: Diff) -> None:
        """Fold in the comparison made at cutoff ``t``."""
        self.cutoffs += 1
        self.rows += diff.rows
        if diff.differing:
            self.differing += diff.differing
            self.flagged_at.append(t)
            self.first = diff.first if self.first is None else min(self.first, diff.first)
            self.max_abs = max(self.max_abs, diff.max_abs)


@dataclass
class LookaheadReport:
    """What the audit found, per component (see :class:`ComponentCheck`)."""

    strategy: str
    symbol: str
    timeframe: str
    span: tuple[pd.Timestamp, pd.Timestamp]
    cutoffs: pd.DatetimeIndex
    components: dict[str, ComponentCheck]

    @property
    def ok(self) -> bool:
        """True when no component changed at any cutoff."""
        return all(c.ok for c in self.components.values())

    @property
    def flagged(self) -> list[str]:
        """Names of the components that changed when the future was cut off."""
        return [name for name, c in self.components.items() if not c.ok]

    def format(self) -> str:
        """A plain-text table, one line per component, and a verdict line."""
        head = (f"lookahead audit: {self.strategy} on {self.symbol} {self.timeframe} "
                f"{self.span[0]:%Y-%m-%d %H:%M} .. {self.span[1]:%Y-%m-%d %H:%M}, {len(self.cutoffs)} cutoff bar(s)")
        lines = [head, f"{'component':<10} {'cutoffs':>7} {'rows':>8} {'differ':>7}  {'first differing bar':<25} "
                       f"{'max |diff|':>10}"]
        for c in self.components.values():
            first = f"{c.first:%Y-%m-%d %H:%M}" if c.first is not None else "-"
            lines.append(f"{c.name:<10} {c.cutoffs:>7} {c.rows:>8} {c.differing:>7}  {first:<25} "
                         f"{c.max_abs:>10.3g}")
        skipped = {c.name: c.skipped for c in self.components.values() if c.skipped}
        for name, n in skipped.items():
            lines.append(f"{name}: {n} cutoff(s) skipped, too few bars before them for the strategy to run")
        if self.ok:
            lines.append("no lookahead found: every checked value is the same with the future cut off")
        else:
            lines.append(f"LOOKAHEAD: {', '.join(self.flagged)} changed when the data after the cutoff was removed")
        return "\n".join(lines)


# ---------------------------------------------------------------- the audit

def _order(names) -> list[str]:
    known = [n for n in COMPONENTS if n in names]
    return known + sorted(set(names) - set(known))


def audit_lookahead(config: BacktestConfig, *, bars: int = 50, seed: int = 0, market: MarketData | None = None,
                    progress: Progress | None = None) -> LookaheadReport:
    """Run ``config.strategy`` on its span, then again with the data cut after each of ``bars`` sampled bars;
    report per component what changed (see the module docstring).

    ``market`` may be given (it must hold the history the strategy needs before the span, as
    :func:`~backtests.engine.load_run_data` loads it). Cost: ``bars + 1`` backtests and strategy preparations;
    an LSTM trains once and loads its cached checkpoint for the other runs.
    """
    from backtests.engine import load_run_data, prepare_strategy, run_backtest   # backtrader: only when auditing

    if config.symbols:
        return audit_portfolio_lookahead(config, bars=bars, seed=seed, progress=progress)
    cls = get_strategy(config.strategy)
    if market is None:
        market, t0, _ = load_run_data(config, cls.history_bars(config))
    else:
        t0, _ = parse_span(config.data.start, config.data.end)
    full = run_backtest(config, market=market)
    probe = probe_of(prepare_strategy(cls, config, market, t0))
    full_parts = {"target": full.target.to_frame(), "truncated": full.target.to_frame()}
    if probe is not None:
        full_parts.update(probe.components(market, t0))
    checks = {name: ComponentCheck(name) for name in _order(full_parts)}
    cutoffs = sample_cutoffs(full.target.index, bars, seed)
    for k, t in enumerate(cutoffs, 1):
        cut = truncate_market(market, t)
        parts = {"target": run_backtest(config, market=blank_future(market, t)).target.to_frame()}
        try:
            parts["truncated"] = run_backtest(config, market=cut).target.to_frame()
        except Exception:            # too few bars for the strategy's indicators; the blanked run covered this cut
            checks["truncated"].skipped += 1
        if probe is not None:
            cut_probe = probe_of(prepare_strategy(cls, config, cut, t0))
            parts.update(cut_probe.components(cut, t0) if cut_probe is not None else {})
        _check_cut(checks, full_parts, parts, t0, t, f"{k}/{len(cutoffs)}", progress)
    span = (full.target.index[0], full.target.index[-1])
    return LookaheadReport(display_name(config.strategy), config.data.symbol, config.data.timeframe, span, cutoffs, checks)


def _check_cut(checks: dict, full_parts: dict, parts: dict, t0, t, label: str, progress: Progress | None) -> None:
    """Compare every component of the run cut at ``t`` with the full run's (``truncated`` only when that run could be
    made) and say the cut's verdict in one progress line."""
    for name, check in checks.items():
        if name in parts or name != "truncated":
            check.add(t, compare_rows(full_parts[name], parts.get(name, pd.DataFrame()), t0, t,
                                      TOLERANCE.get(name, 0.0)))
    if progress:
        bad = [n for n, c in checks.items() if c.flagged_at and c.flagged_at[-1] == t]
        progress(f"  cutoff {label} at {t:%Y-%m-%d %H:%M}: {'changed: ' + ', '.join(bad) if bad else 'same'}")


def audit_portfolio_lookahead(config: BacktestConfig, *, bars: int = 50, seed: int = 0, data=None,
                              progress: Progress | None = None) -> LookaheadReport:
    """The audit over a portfolio strategy (``config.symbols``): the targets of every symbol at every bar <= t must be
    the same when every symbol's data after t is blanked (component ``target``) or truly cut (``truncated``).

    ``data``: a :class:`~backtests.portfolio.data.PortfolioData` with the history the strategy needs (default:
    loaded as a portfolio run loads it). A strategy whose ``prepare()`` returns a probe (``lstm_portfolio``: each
    symbol's features, scaled features and model probabilities, columns prefixed with the symbol) has those
    compared too, recomputed from the truncated data at each cut.
    """
    from backtests.portfolio.data import PortfolioData, load_portfolio_data
    from backtests.portfolio.engine import portfolio_class, run_portfolio

    cls = portfolio_class(config.strategy)
    if data is None:
        data, t0, _ = load_portfolio_data(config, cls.history_bars(config))
    else:
        t0, _ = parse_span(config.data.start, config.data.end)
        data = PortfolioData({s: data.markets[s] for s in config.symbols})
    full = run_portfolio(config, data=data).portfolio.target
    probe = cls.prepare(config, data, t0).probe if hasattr(cls, "prepare") else None
    full_parts = {"target": full, "truncated": full, **(probe.components(data, t0) if probe is not None else {})}
    checks = {name: ComponentCheck(name) for name in _order(full_parts)}
    cutoffs = sample_cutoffs(full.index, bars, seed)
    for k, t in enumerate(cutoffs, 1):
        blanked = PortfolioData({s: blank_future(m, t) for s, m in data.markets.items()})
        parts = {"target": run_portfolio(config, data=blanked).portfolio.target}
        cut = PortfolioData({s: truncate_market(m, t) for s, m in data.markets.items()})
        try:
            parts["truncated"] = run_portfolio(config, data=cut).portfolio.target
        except Exception:       # a symbol without a bar before the cut, or too few bars: the blanked run covered it
            checks["truncated"].skipped += 1
        if probe is not None:
            cut_probe = cls.prepare(config, cut, t0).probe
            parts.update(cut_probe.components(cut, t0) if cut_probe is not None else {})
        _check_cut(checks, full_parts, parts, t0, t, f"{k}/{len(cutoffs)}", progress)
    return LookaheadReport(display_name(config.strategy), "+".join(config.symbols), config.data.timeframe,
                           (full.index[0], full.index[-1]), cutoffs, checks)


# ---------------------------------------------------------------- the CLI command

def add_lookahead_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``lstmbt check-lookahead`` besides the data flags it shares with ``lstmbt backtest``."""
    from backtests.flags import add_flags

    parser.add_argument("--config", help="TOML config file (flags below override it)")
    parser.add_argument("--strategy", help="strategy to audit: lstm, sma_cross ... or your own, my_file.py:MyStrategy")
    parser.add_argument("--bars", type=int, default=50, help="how many bars to cut the data at (default 50)")
    add_flags(parser, "--cache-dir", "--seed", seed="random seed of the models, as in every command (default 42)")
    parser.add_argument("--sample-seed", dest="sample_seed", type=int, default=0,
                        help="seed that picks the cutoff bars (default 0)")


def lookahead_command(args: argparse.Namespace) -> int:
    """``lstmbt check-lookahead``: print the audit table; 0 when clean, 1 when lookahead was found.

    Bad input (unknown strategy, span, file, config) raises ValueError, which the CLI prints as one line with
    exit status 2.
    """
    from backtests.cli import build_config

    if args.bars < 1:
        raise ValueError(f"--bars must be at least 1, got {args.bars}")
    config = build_config(args)
    if not config.symbols:
        get_strategy(config.strategy)
    print(f"lstmbt check-lookahead: {display_name(config.strategy)} on "
          f"{'+'.join(config.symbols) or config.data.symbol} {config.data.timeframe} "
          f"{config.data.start} .. {config.data.end}, {args.bars} cutoff bar(s) (sample seed {args.sample_seed}), model seed {config.seed}", flush=True)
    report = audit_lookahead(config, bars=args.bars, seed=args.sample_seed,
                             progress=lambda line: print(line, flush=True))
    print(report.format())
    return 0 if report.ok else 1
