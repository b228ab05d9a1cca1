"""The objective: out-of-sample walk-forward results over the search span, fold by fold.

The config's span (``[data] start .. end``) is cut into the **search span** and the **final span** (its last
``final_fraction`` of bars, 20 % by default), which the search never loads. The search span is cut into ``folds``
consecutive segments; a trial runs one backtest per segment, each with its own history before the segment (an LSTM
trains its models there, so every traded bar is out of sample) and reports the objective over the segments run so
far, so the pruner can stop a hopeless trial early. The winner is run once on the final span, cut into segments of
the same length.

Metrics are computed on the bar returns of the segments glued together (each segment starts from the same cash;
a position still open at a segment's end is valued at its last close):

- ``sharpe``: annualised Sharpe ratio, mean / std(ddof=1) x sqrt(bars per year); higher is better;
- ``sortino``: mean / sqrt(mean(min(r, 0)^2)) x sqrt(bars per year); higher is better;
- ``return``: compounded return in percent; higher is better;
- ``calmar``: CAGR / |max drawdown|; higher is better;
- ``max_drawdown``: the largest fall from a peak, in percent of the peak (25.0 = -25 %); lower is better, so it is
  written ``-max_drawdown``.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from backtests.config import BacktestConfig, ConfigError
from data_feeds import DataError, MarketData
from data_feeds.timeframes import bars_per_year, timeframe_delta

METRICS = {"sharpe": "maximize", "sortino": "maximize", "return": "maximize", "calmar": "maximize",
           "max_drawdown": "minimize"}
"""Metric name -> the direction Optuna optimises it in."""


@dataclass(frozen=True)
class Objective:
    """One objective as written (``"sharpe"``, ``"-max_drawdown"``): the metric and its direction."""

    text: str
    metric: str
    direction: str


def parse_objectives(names) -> list[Objective]:
    """``["sharpe", "-max_drawdown"]`` -> objectives. One or two; a leading ``-`` marks a lower-is-better metric
    and must agree with it (``-sharpe`` or a bare ``max_drawdown`` is refused with a hint)."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not isinstance(names, (list, tuple)) or not 1 <= len(names) <= 2:
        raise ConfigError(f"objectives: give one or two of {', '.join(_spelled())}, got {names!r}")
    out = []
    for text in names:
        if not isinstance(text, str):
            raise ConfigError(f"objectives: {text!r} is not a metric name")
        metric = text.lstrip("-")
        if metric not in METRICS:
            raise ConfigError(f"objectives: unknown metric {text!r}; use {', '.join(_spelled())}")
        lower = text.startswith("-")
        if lower != (METRICS[metric] == "minimize"):
            raise ConfigError(f"objectives: {text!r}: {metric} is {'lower' if not lower else 'higher'} is better; "
                              f"write {'-' if not lower else ''}{metric}")
        out.append(Objective(text, metric, METRICS[metric]))
    if len({o.metric for o in out}) != len(out):
        raise ConfigError(f"objectives: {names!r} names a metric twice")
    return out


def _spelled() -> list[str]:
    return [("-" if d == "minimize" else "") + m for m, d in METRICS.items()]


def metric_value(metric: str, returns, timeframe: str) -> float:
    """``metric`` (see the module docstring) of bar ``returns`` (fractions); NaN where undefined (no spread)."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    periods = bars_per_year(timeframe)
    if r.size == 0:
        return float("nan")
    equity = np.cumprod(1.0 + r)
    if metric == "return":
        return float(equity[-1] - 1.0) * 100
    peaks = np.maximum.accumulate(np.r_[1.0, equity])
    max_dd = float(np.max(1.0 - np.r_[1.0, equity] / peaks))
    if metric == "max_drawdown":
        return max_dd * 100
    if metric == "calmar":
        years = r.size / periods
        cagr = equity[-1] ** (1.0 / years) - 1.0 if equity[-1] > 0 else -1.0
        return float(cagr / max_dd) if max_dd > 0 else float("nan")
    if metric == "sortino":
        down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
        return float(r.mean() / down * math.sqrt(periods)) if down > 0 else float("nan")
    if metric == "sharpe":
        std = float(r.std(ddof=1)) if r.size > 1 else 0.0
        return float(r.mean() / std * math.sqrt(periods)) if std > 0 else float("nan")
    raise ConfigError(f"unknown metric {metric!r}")


# ---------------------------------------------------------------- spans and segments

@dataclass(frozen=True)
class Segment:
    """A span of bars backtested on its own: ``[start, stop)`` open times, ``bars`` of them."""

    number: int
    start: pd.Timestamp
    stop: pd.Timestamp
    bars: int

    @property
    def label(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} .. {self.stop:%Y-%m-%d %H:%M}"


@dataclass(frozen=True)
class SpanPlan:
    """The search segments, the final segments and where the final span starts."""

    search: tuple[Segment, ...]
    final: tuple[Segment, ...]
    final_start: pd.Timestamp
    search_bars: int
    final_bars: int


def plan_spans(index: pd.DatetimeIndex, folds: int, final_fraction: float) -> SpanPlan:
    """Cut ``index`` (the bars of the config's span) into ``folds`` search segments and the final span, which
    takes the last ``round(len * final_fraction)`` bars (0 = no final span) in segments of the search
    segments' length. 1,000 bars, 4 folds, 0.2: four segments of 200 bars, then a final span of 200 bars."""
    if not 0 <= final_fraction < 1:
        raise ConfigError(f"final fraction must be in [0, 1), got {final_fraction}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ConfigError(f"folds must be a whole number >= 1, got {folds!r}")
    n = len(index)
    n_final = int(round(n * final_fraction))
    n_search = n - n_final
    if n_search < folds * 10:
        raise DataError(f"the search span has {n_search} bars, too few for {folds} folds of at least 10 bars; "
                        f"use a longer span or fewer --folds")
    if final_fraction > 0 and n_final < 10:
        raise DataError(f"the final span has only {n_final} bars; use a longer span or a larger --final-fraction")
    bar = index[1] - index[0] if n > 1 else pd.Timedelta(0)

    def segments(first: int, stop: int, size: int, number0: int) -> list[Segment]:
        out, a = [], first
        while a < stop:
            b = min(a + size, stop)
            end = index[b] if b < n else index[-1] + bar
            out.append(Segment(number0 + len(out), index[a], end, b - a))
            a = b
        return out

    bounds = np.linspace(0, n_search, folds + 1).round().astype(int)
    search = [Segment(k, index[a], index[b] if b < n else index[-1] + bar, int(b - a))
              for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    size = int(max(s.bars for s in search))
    final = segments(n_search, n, size, folds) if n_final else []
    final_start = index[n_search] if n_final else index[-1] + bar
    return SpanPlan(tuple(search), tuple(final), final_start, n_search, n_final)


# ---------------------------------------------------------------- one segment of one trial, run anywhere

@dataclass
class FoldTask:
    """What a worker needs to backtest one segment of one trial: the trial's config (span = the segment) and
    the market data it may read (history before the segment, then the segment; nothing after it)."""

    trial: int
    segment: Segment
    config: BacktestConfig
    market: MarketData


@dataclass
class FoldOutcome:
    """The segment's bar returns (fractions, one per bar of the segment), its trades, and how many fold models
    were trained or loaded from the model cache; or an ``error`` (one line) with its traceback as ``detail``."""

    trial: int
    segment: int
    returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    trades: int = 0
    seconds: float = 0.0
    trained: int = 0
    cached: int = 0
    peak_mib: float = 0.0
    error: str | None = None
    detail: str = ""


def fold_market(full: MarketData, config: BacktestConfig, segment: Segment) -> MarketData:
    """The slice of ``full`` a segment's backtest reads: the strategy's history bars before it, then it."""
    from strategies.registry import get_strategy

    history = int(get_strategy(config.strategy).history_bars(config))
    first = segment.start - history * timeframe_delta(config.data.timeframe)
    market = full.slice(first, segment.stop)
    if history and (len(market.candles) == 0 or market.candles.index[0] > first):
        have = int((full.candles.index < segment.start).sum())
        raise DataError(f"{config.strategy} needs {history} bars of history before {segment.start:%Y-%m-%d %H:%M} "
                        f"to train; the data has {have}; load data from earlier or move [data] start later")
    return market


def run_fold(task: FoldTask) -> FoldOutcome:
    """Backtest one segment where it lands (a worker process, a Dask worker or here); never raises."""
    from backtests.engine import run_backtest
    from reports.metrics import bar_returns

    counts = {"cached": 0}

    def listen(line: str) -> None:          # the model cache says "using cached model <dir>" on a hit
        if line.strip().startswith("using cached model"):
            counts["cached"] += 1

    started = time.perf_counter()
    try:
        result = run_backtest(task.config, market=task.market, progress=listen)
        returns = bar_returns(result.equity, result.initial_cash).to_numpy(dtype="float64")
    except Exception as exc:            # the trial's failure is its result; the search goes on
        text = str(exc).strip().splitlines()
        return FoldOutcome(task.trial, task.segment.number, error=f"{type(exc).__name__}: {text[0]}" if text
                           else type(exc).__name__, detail=traceback.format_exc(),
                           seconds=time.perf_counter() - started)
    models = len(getattr(result, "models", None) or result.extras.get("checkpoints", []))
    return FoldOutcome(task.trial, task.segment.number, returns, trades=len(result.trades),
                       seconds=time.perf_counter() - started, trained=max(models - counts["cached"], 0),
                       cached=counts["cached"], peak_mib=_peak_mib())


def _peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


__all__ = ["FoldOutcome", "FoldTask", "METRICS", "Objective", "Segment", "SpanPlan", "fold_market", "metric_value",
           "parse_objectives", "plan_spans", "run_fold"]
