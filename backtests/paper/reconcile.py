"""``lstmbt paper reconcile``: a paper run side by side with a backtest over exactly the same bars.

Both are recomputed from the run folder alone (the candles, funding and mark prices the paper run received, and
the decisions it executed), with no network. Every bar where position, fills, fees, funding or equity differ is
listed with its cause: a decision that came too late to execute (*missed bar*, the runner was disconnected or
stopped), or, with no such cause, *unexplained* (a bug: please report it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtests.config import config_from_dict
from backtests.paper.runner import (DECISION_COLUMNS, FAR_END, STATE_FILE, PaperError, PaperState, paper_account,
                                    read_decisions)
from backtests.result import BacktestResult
from data_feeds import MarketData, find_gaps

TOLERANCE = 1e-9
"""Relative difference (of the starting cash, for money) below which two numbers are the same."""


@dataclass
class Reconciliation:
    """``table``: one row per bar (paper and backtest position, equity, fees, funding, fills, difference, cause);
    ``differences``: the rows that differ; ``paper`` and ``backtest``: the two recomputed runs."""

    table: pd.DataFrame
    differences: pd.DataFrame
    paper: BacktestResult
    backtest: BacktestResult
    demo: pd.DataFrame | None = None

    def summary(self) -> list[str]:
        """Lines for the terminal."""
        t, d = self.table, self.differences
        lines = [f"bars: {len(t):,} ({t.index[0]:%Y-%m-%d %H:%M} .. {t.index[-1]:%Y-%m-%d %H:%M} UTC)" if len(t)
                 else "bars: none yet",
                 f"final equity: paper {self.paper.equity.iloc[-1]:,.2f}  backtest {self.backtest.equity.iloc[-1]:,.2f}"
                 if len(t) else "",
                 f"fills: paper {len(self.paper.fills)}  backtest {len(self.backtest.fills)}"]
        if not len(d):
            lines.append("no differences: positions, fills, fees, funding and equity agree on every bar")
        else:
            lines.append(f"{len(d)} bar(s) differ; causes: " +
                         ", ".join(f"{cause} ({n})" for cause, n in d["cause"].value_counts().items()))
            first = d.iloc[0]
            lines.append(f"first difference at {d.index[0]:%Y-%m-%d %H:%M}: {first['cause']}")
        if self.demo is not None:
            off = self.demo[self.demo["cause"] != ""]
            lines.append(f"demo orders: {len(self.demo)}; " + ("all filled as simulated" if not len(off) else
                         f"{len(off)} differ from the simulated fills: " +
                         ", ".join(f"{c} ({n})" for c, n in off["cause"].str.split("; ").explode().value_counts().items())))
        return [line for line in lines if line]


def load_paper_run(folder: str | Path) -> tuple[PaperState, MarketData, pd.DataFrame]:
    """The saved state, market data and decisions of a paper run folder."""
    folder = Path(folder)
    if not (folder / STATE_FILE).exists():
        raise PaperError(f"{folder}: no paper run here ({STATE_FILE} missing)")
    state = PaperState.load(folder)
    frames = {}
    for kind in ("candles", "funding", "mark"):
        path = folder / "data" / f"paper_{kind}.parquet"
        try:
            frames[kind] = pd.read_parquet(path) if path.exists() else None
        except (OSError, ValueError) as exc:
            raise PaperError(f"{path}: unreadable ({exc.__class__.__name__})") from None
    if frames["candles"] is None or not len(frames["candles"]):
        raise PaperError(f"{folder}: the paper run holds no candles yet")
    decisions_path = folder / "decisions.csv"
    decisions = read_decisions(decisions_path) if decisions_path.exists() else pd.DataFrame(columns=DECISION_COLUMNS)
    market = MarketData(state.exchange, state.symbol, state.timeframe, frames["candles"],
                        frames["funding"] if frames["funding"] is not None else pd.DataFrame(columns=["funding_rate"]),
                        frames["mark"] if frames["mark"] is not None and len(frames["mark"]) else None,
                        f"paper run {folder.name}", find_gaps(frames["candles"].index, state.timeframe))
    return state, market, decisions


def reconcile(folder: str | Path) -> Reconciliation:
    """Recompute the paper account and a backtest of the same bars from ``folder`` and list their differences."""
    from backtests.engine import run_backtest

    state, market, decisions = load_paper_run(folder)
    config = config_from_dict({**state.config, "data": {**state.config["data"], "end": FAR_END}}, "paper state")
    backtest = run_backtest(config, market=market)
    index = backtest.target.index
    paper = paper_account(config, market, decisions, index)
    table = _side_by_side(paper, backtest, config.broker.cash)
    causes = deviations(decisions, backtest.target)
    table["cause"] = ""
    differs = table["differs"]
    for t in table.index[differs]:
        earlier = causes[causes.index <= t]
        table.loc[t, "cause"] = earlier.iloc[-1] if len(earlier) else "unexplained"
    demo_path = Path(folder) / "demo_fills.csv"
    demo = compare_demo_fills(pd.read_csv(demo_path), paper.fills, index[-1]) if demo_path.exists() else None
    return Reconciliation(table, table[differs], paper, backtest, demo)


def compare_demo_fills(demo: pd.DataFrame, simulated: pd.DataFrame, last_bar: pd.Timestamp,
                       price_tolerance: float = 1e-9) -> pd.DataFrame:
    """Each demo order next to the simulated fill of the same bar, with the causes of any difference:
    *partial fill* (less filled than ordered), *slippage* (another price), *fee* (another fee for the same
    notional), *no simulated fill*; an order for the bar after ``last_bar`` is *pending* (not simulated yet)."""
    sim = simulated.assign(time=pd.to_datetime(simulated["time"], utc=True)).groupby("time").agg(
        sim_size=("size", "sum"), sim_price=("price", "mean"), sim_fee=("fee", "sum"))
    out = demo.copy()
    out["bar"] = pd.to_datetime(out["bar"], utc=True)
    out = out.join(sim, on="bar")
    causes = []
    for row in out.itertuples(index=False):
        why = []
        if row.bar > last_bar:
            why.append("pending (its bar is not held yet)")
        elif pd.isna(row.sim_size):
            why.append("no simulated fill")
        else:
            if abs(row.filled) < abs(row.requested) - 1e-12:
                why.append("partial fill")
            if abs(row.price - row.sim_price) > price_tolerance * max(abs(row.sim_price), 1.0):
                why.append("slippage")
            rate, sim_rate = row.fee / max(abs(row.filled * row.price), 1e-12), \
                row.sim_fee / max(abs(row.sim_size * row.sim_price), 1e-12)
            if abs(rate - sim_rate) > 1e-9:
                why.append("fee")
        causes.append("; ".join(why))
    out["cause"] = causes
    return out


def deviations(decisions: pd.DataFrame, backtest_target: pd.Series) -> pd.Series:
    """Bars where the paper run executed another target than the backtest chose, each with its cause."""
    out = {}
    for row in decisions.itertuples(index=False):
        t = pd.Timestamp(row.time)
        if t not in backtest_target.index or abs(row.executed_target - backtest_target.loc[t]) < 1e-12:
            continue
        if row.note == "missed":
            out[t] = f"missed bar {t:%Y-%m-%d %H:%M} (its decision came after the next bar had closed)"
        elif row.note == "not ready":
            out[t] = f"strategy not ready at {t:%Y-%m-%d %H:%M} (a backtest of the bars held then was refused)"
        else:
            out[t] = f"decision at {t:%Y-%m-%d %H:%M} differs from the backtest's"
    return pd.Series(out, dtype=object).sort_index()


def _side_by_side(paper: BacktestResult, backtest: BacktestResult, cash: float) -> pd.DataFrame:
    def per_bar_fills(result):
        fills = result.fills
        return fills.groupby("time")["size"].sum().reindex(result.equity.index, fill_value=0.0)

    table = pd.DataFrame({
        "paper_position": paper.position, "backtest_position": backtest.position,
        "paper_fill": per_bar_fills(paper), "backtest_fill": per_bar_fills(backtest),
        "paper_fees": paper.fees, "backtest_fees": backtest.fees,
        "paper_funding": paper.funding, "backtest_funding": backtest.funding,
        "paper_equity": paper.equity, "backtest_equity": backtest.equity,
    })
    money = TOLERANCE * cash
    table["differs"] = (
        ~np.isclose(table["paper_position"], table["backtest_position"], rtol=0, atol=1e-12)
        | ~np.isclose(table["paper_fill"], table["backtest_fill"], rtol=0, atol=1e-12)
        | ~np.isclose(table["paper_fees"], table["backtest_fees"], rtol=0, atol=money)
        | ~np.isclose(table["paper_funding"], table["backtest_funding"], rtol=0, atol=money)
        | ~np.isclose(table["paper_equity"], table["backtest_equity"], rtol=0, atol=money))
    return table
