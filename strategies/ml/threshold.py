"""Choosing ``min_confidence`` on the validation span: the threshold whose decided signals earned the most there.

Class imbalance (a model that rarely dares a LONG/SHORT probability above 0.5) and churn (flipping every bar
and paying the fee each time) are both handled by one choice made on validation data only: for each candidate
threshold, trade the signals :func:`strategies.ml.decision.decide` gives and keep the threshold with the best
net log return. The test span is never looked at.

Trading convention (the same as the backtest's): the decision at bar t is made on t's close and fills at
open[t+1], so position p[t] earns r[t] = log(open[t+2] / open[t+1]); every unit of position change pays
``cost / 2`` (``cost`` is the round-trip cost as a log return, so going flat -> long -> flat pays ``cost``).
The span starts flat.

A threshold chosen on a handful of validation trades is noise: when the chosen threshold traded fewer than
:data:`MIN_VALIDATION_TRADES` times on the validation span it is not trusted, and the fold's model stays flat
(its ``min_confidence`` becomes :data:`NO_TRADE_CONFIDENCE`, above any probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strategies.ml.decision import decide

DEFAULT_CANDIDATES = tuple(round(0.34 + 0.02 * k, 2) for k in range(19))     # 0.34, 0.36, ..., 0.70
MIN_VALIDATION_TRADES = 20        # fewer validation trades under the chosen threshold: the fold stays flat
NO_TRADE_CONFIDENCE = 1.01        # a min_confidence no class probability reaches: every decision is FLAT
OBJECTIVE = "validation net log return of the decided signals: sum p[t] * r[t] - cost/2 * |p[t] - p[t-1]|"


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and one row per candidate: net log return, position changes, trades, share of bars held.

    ``trades``: positions opened on the validation span under the chosen threshold; ``trusted``: at least
    ``min_trades`` of them (:data:`MIN_VALIDATION_TRADES` by default).
    """

    min_confidence: float
    table: list[dict]
    min_trades: int = MIN_VALIDATION_TRADES

    @property
    def trades(self) -> int:
        row = next(r for r in self.table if r["min_confidence"] == self.min_confidence)
        return int(row["trades"])

    @property
    def trusted(self) -> bool:
        return self.trades >= self.min_trades

    def to_dict(self) -> dict:
        return {"min_confidence": self.min_confidence, "objective": OBJECTIVE, "table": self.table,
                "trades": self.trades, "min_trades": self.min_trades, "trusted": self.trusted}


def count_trades(signals: np.ndarray) -> int:
    """Positions opened: bars whose signal is LONG or SHORT and differs from the bar before (a flip opens one).

    Signals [0, 1, 1, -1, 0, 0, 1] open 3 positions (long, the flip to short, long again); the span starts flat.
    """
    p = np.asarray(signals, dtype=np.float64)
    prev = np.concatenate([[0.0], p[:-1]])
    return int(np.count_nonzero((p != 0) & (p != prev)))


def next_bar_returns(opens: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """r[k] = log(open[ends[k] + 2] / open[ends[k] + 1]): what a position decided at bar ``ends[k]`` earns.

    Opens 100, 100, 110, 121 with ends [0, 1]: [log 1.1, log 1.1]. Raises ValueError when a bar is missing.
    """
    opens = np.asarray(opens, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.int64)
    if ends.size and ends.max() + 2 >= len(opens):
        raise ValueError(f"decision bar {ends.max()} needs open[{ends.max() + 2}], the data has {len(opens)} bars")
    return np.log(opens[ends + 2]) - np.log(opens[ends + 1])


def signal_net_return(signals: np.ndarray, returns: np.ndarray, cost: float) -> tuple[float, int, float]:
    """(net log return, number of position changes, share of bars in the market) of trading ``signals``.

    Signals [1, 1, -1, 0] over returns [0.01, 0.02, -0.01, 0.05] with cost 0.002:
    0.01 + 0.02 + 0.01 - 0.001 * (1 + 0 + 2 + 1) = 0.036, 3 changes, 75 % held.
    """
    p = np.asarray(signals, dtype=np.float64)
    r = np.asarray(returns, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"{len(p)} signals but {len(r)} returns")
    turnover = np.abs(np.diff(p, prepend=0.0))
    net = float(np.sum(p * r) - cost / 2.0 * np.sum(turnover))
    return net, int(np.count_nonzero(turnover)), float(np.mean(p != 0)) if len(p) else 0.0


def tune_min_confidence(probabilities: np.ndarray, returns: np.ndarray, cost: float,
                        candidates: tuple[float, ...] = DEFAULT_CANDIDATES) -> ThresholdChoice:
    """The candidate threshold with the best :func:`signal_net_return` on (probabilities (N, 3), returns (N,)).

    Ties go to the higher threshold (fewer trades for the same return). ``probabilities`` and ``returns`` are the
    validation span's contiguous decision bars, in order.
    """
    if not candidates:
        raise ValueError("no candidate thresholds to choose from")
    if not cost >= 0:
        raise ValueError(f"cost must be a non-negative log return, got {cost}")
    table = []
    for threshold in sorted(set(float(c) for c in candidates), reverse=True):
        signals = decide(probabilities, threshold)
        net, changes, held = signal_net_return(signals, returns, cost)
        table.append({"min_confidence": threshold, "net_log_return": net, "position_changes": changes,
                      "trades": count_trades(signals), "exposure": held})
    best = max(table, key=lambda row: row["net_log_return"])     # first maximum = the highest threshold among ties
    table.sort(key=lambda row: row["min_confidence"])
    return ThresholdChoice(best["min_confidence"], table)
