"""What the backtest report shows besides metrics and charts: its one buy-and-hold, the verdict, the walk-forward
fold table, the worst drawdowns and the trade list with the model's confidence at each entry.

**The one buy-and-hold** (:func:`find_reference`): a ``buy_hold`` run on the same bars, through the same broker, at
1x leverage, so it pays fees, slippage and funding like the strategy (``lstmbt backtest`` always runs one; see
``backtests.session``). Only when a result comes without one (a bare ``write_report(result)`` from Python) is it
estimated from the closes (:func:`estimated_buy_and_hold`), labelled as such.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from data_feeds.timeframes import bars_per_year, timeframe_delta
from reports.metrics import bar_returns, buy_and_hold_equity, result_risk_free
from reports.statistics import expected_max_sharpe, probabilistic_sharpe_ratio
from reports.verdict import Verdict, excess_returns, verdict

if TYPE_CHECKING:
    from backtests.result import BacktestResult

REFERENCE_STRATEGY = "buy_hold"
ESTIMATED_NAME = "buy & hold (1x, est. from closes, fee, no funding)"


def _leverage(result) -> float | None:
    config = result.config if isinstance(getattr(result, "config", None), dict) else {}
    value = (config.get("broker") or {}).get("leverage")
    return float(value) if isinstance(value, (int, float)) else None


def is_reference(result) -> bool:
    """A ``buy_hold`` run at 1x leverage: the report's buy-and-hold."""
    return getattr(result, "strategy", None) == REFERENCE_STRATEGY and _leverage(result) == 1.0


def find_reference(main: "BacktestResult", baselines: Sequence) -> "BacktestResult | None":
    """The first 1x ``buy_hold`` result among ``main`` and ``baselines`` (results, not bare curves), else None."""
    for item in (main, *baselines):
        if not isinstance(item, tuple) and is_reference(item):
            return item
    return None


def estimated_buy_and_hold(result: "BacktestResult") -> pd.Series:
    """Buy-and-hold when no 1x ``buy_hold`` run is at hand: the initial cash, less one taker fee and the slippage,
    in the asset at the first close, held to the end; funding is not known here and left out."""
    broker = (result.config.get("broker") or {}) if isinstance(result.config, dict) else {}
    cost = float(broker.get("taker_fee", 0.0) or 0.0) + float(broker.get("slippage_bps", 0.0) or 0.0) / 1e4
    return buy_and_hold_equity(result.prices["close"], result.initial_cash * (1.0 - cost)).rename("buy_hold")


def result_verdict(result: "BacktestResult", bh_equity: pd.Series, *, confidence: float = 0.95, n_boot: int = 1000,
                   seed: int | None = None, risk_free: float | None = None) -> Verdict:
    """:func:`reports.verdict.verdict` of ``result`` against ``bh_equity`` (buy-and-hold's equity on its bars, from
    the same initial cash); the seed and the risk-free rate default to the run's config (as in ``compare``)."""
    cash = float(result.initial_cash)
    r = bar_returns(result.equity, cash).to_numpy()
    bh = bar_returns(bh_equity.reindex(result.equity.index).ffill().bfill(), cash).to_numpy()
    config = result.config if isinstance(result.config, dict) else {}
    seed = int(config.get("seed", 0) or 0) if seed is None else seed
    rf = result_risk_free(result) if risk_free is None else risk_free
    return verdict(r, bh, result.timeframe, confidence=confidence, n_boot=n_boot, seed=seed, risk_free=rf)


def deflated_sharpe(result: "BacktestResult", count: int, sharpes: Sequence[float]) -> float:
    """The PSR of ``result`` against the Sharpe ratio the best of ``count`` configurations would reach by luck, the
    spread of their (annualised) ``sharpes`` giving the variance (Bailey & López de Prado 2014); NaN without
    trials."""
    if count < 1:
        return float("nan")
    scale = math.sqrt(bars_per_year(result.timeframe))
    per_bar = np.asarray([s for s in sharpes if math.isfinite(s)], dtype="float64") / scale
    variance = float(np.var(per_bar, ddof=1)) if per_bar.size > 1 else 0.0
    r = excess_returns(bar_returns(result.equity, result.initial_cash).to_numpy(), result_risk_free(result),
                       result.timeframe)
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(count, variance))


def fold_table(result: "BacktestResult") -> pd.DataFrame:
    """One row per walk-forward fold: its train, validation and test spans, the tuned confidence threshold and any
    other figures the checkpoint records (validation accuracy, log-loss...). Train and validation spans come from
    the checkpoint when it records them, else from the ``[model]`` bar counts before the test start (as
    the walk-forward cuts them). Empty when the run had no folds."""
    starts = [pd.Timestamp(t) for t in getattr(result, "fold_boundaries", None) or []]
    checkpoints = list(getattr(result, "models", None) or [])
    if not starts:
        return pd.DataFrame()
    bar = timeframe_delta(result.timeframe)
    model = (result.config.get("model") or {}) if isinstance(result.config, dict) else {}
    train_bars, val_bars = model.get("train_bars"), model.get("val_bars")
    last = result.equity.index[-1]
    rows = []
    for k, start in enumerate(starts):
        ck = checkpoints[k] if k < len(checkpoints) and len(checkpoints) == len(starts) else {}
        end = starts[k + 1] - bar if k + 1 < len(starts) else last
        row: dict[str, object] = {"fold": k + 1}
        if isinstance(val_bars, int) and isinstance(train_bars, int):
            val_start = start - val_bars * bar
            row["train"] = f"{val_start - train_bars * bar:%Y-%m-%d} .. {val_start - bar:%Y-%m-%d}"
            row["validation"] = f"{val_start:%Y-%m-%d} .. {start - bar:%Y-%m-%d}"
        row["test"] = f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}"
        row["threshold"] = ck.get("min_confidence", np.nan)
        for key, value in ck.items():
            if key in ("min_confidence", "fold", "name") or key.endswith("sha256") or key == "path":
                continue
            if isinstance(value, (int, float, str, bool)) or value is None:
                row[key.replace("_", " ")] = value
        rows.append(row)
    return pd.DataFrame(rows)


def trades_with_confidence(result: "BacktestResult") -> pd.DataFrame:
    """``result.trades`` plus ``confidence``: the model's probability of the trade's direction (long or short) at
    the entry's decision bar, the bar before the entry fill (a decision on bar t's close fills at t+1's open).
    The trades unchanged when the run has no predictions."""
    trades = result.trades
    preds = result.predictions
    if preds is None or not len(trades) or not len(preds) or "entry_time" not in trades:
        return trades
    entry = pd.DatetimeIndex(pd.to_datetime(trades["entry_time"], utc=True))
    index = pd.DatetimeIndex(preds.index)
    pos = index.searchsorted(entry.as_unit(index.unit), side="left") - 1   # last bar strictly before the fill
    direction = pd.to_numeric(trades["direction"], errors="coerce").to_numpy()
    conf = np.full(len(trades), np.nan)
    for i, (p, d) in enumerate(zip(pos, direction)):
        col = "long" if d > 0 else "short" if d < 0 else None
        if p >= 0 and col in preds.columns:
            conf[i] = float(preds[col].iloc[p])
    out = trades.copy()
    out.insert(out.columns.get_loc("direction") + 1, "confidence", conf)
    return out


def verdict_text(metrics_json, result: "BacktestResult") -> str:
    """The verdict for the terminal, from a report's ``metrics.json`` and the strategy's result (for the trials)::

        verdict: lstm did not beat buy-and-hold with confidence (Sharpe 1.30 vs 0.55, p = 0.21); ...
          Sharpe 1.30 [95 % interval 0.02, 2.61], PSR vs 0 0.98; buy_hold 0.55 [-0.71, 1.83]; ...
          7 configurations have been tried on this span; deflated Sharpe ratio 0.93
    """
    import json
    from pathlib import Path

    doc = json.loads(Path(metrics_json).read_text())
    v = doc.get("verdict")
    if not v:
        return "verdict: none (no prices to build buy-and-hold from)"
    f = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    pct = f"{v['confidence']:.0%}"
    lines = [f"verdict: {result.name} {v['sentence']}",
             f"  Sharpe {f(v['sharpe'])} [{pct} interval {f(v['sharpe_low'])}, {f(v['sharpe_high'])}], PSR vs 0 "
             f"{'n/a' if v['psr_vs_0'] is None else format(v['psr_vs_0'], '.3f')}; {v['reference']} "
             f"{f(v['bh_sharpe'])} [{f(v['bh_sharpe_low'])}, {f(v['bh_sharpe_high'])}]; difference {f(v['diff'])} "
             f"[{f(v['diff_low'])}, {f(v['diff_high'])}]"]
    trials = (getattr(result, "extras", None) or {}).get("trials")
    if trials:
        count = int(trials["count"])
        dsr = deflated_sharpe(result, count, trials.get("sharpes") or [])
        lines.append(f"  {count} configuration{'s have' if count != 1 else ' has'} been tried on this span; "
                     f"deflated Sharpe ratio {'n/a' if not math.isfinite(dsr) else format(dsr, '.3f')}")
    return "\n".join(lines)


__all__ = ["ESTIMATED_NAME", "deflated_sharpe", "estimated_buy_and_hold", "find_reference", "fold_table",
           "is_reference", "result_verdict", "trades_with_confidence", "verdict_text"]
