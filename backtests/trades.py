"""Round trips from fills: a pure function of the fills, the bar index and the funding paid per bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtests.result import TRADE_COLUMNS

QTY_EPS = 1e-12  # quantities this small are float noise of size arithmetic, not a position


def trades_from_fills(fills: pd.DataFrame, bar_index: pd.DatetimeIndex, funding: pd.Series,
                      last_close: float) -> pd.DataFrame:
    """Group fills into trades: a trade opens when the position leaves zero and ends when it returns to zero
    or flips sign (a flip ends one trade and opens the next in the same fill, its fee split by quantity).

    ``fills`` has columns time, size (signed), price, fee; ``funding`` is USDT paid per bar on ``bar_index``
    (positive = paid). A trade pays the funding settled after its entry fill up to and including its exit bar
    (funding settles before the fills of the same bar). A position open at the end is valued at ``last_close``
    and reported with ``status="open"``.

    Example: buy 1 @ 100 (fee 0.05), sell 1 @ 110 (fee 0.055) -> one long trade, price_pnl 10, pnl 9.895.
    """
    rows: list[dict] = []
    cum_funding = np.concatenate([[0.0], np.cumsum(funding.reindex(bar_index, fill_value=0.0).to_numpy())])
    pos = avg = fees = pnl = peak = 0.0
    entry_time = None

    def funding_between(t_entry, t_exit) -> float:
        # bars strictly after the entry bar up to and including the exit bar
        i0 = bar_index.get_loc(t_entry) + 1
        i1 = bar_index.get_loc(t_exit) + 1
        return float(cum_funding[i1] - cum_funding[i0]) if i1 > i0 else 0.0

    def close(t_exit, exit_price, status):
        fund = funding_between(entry_time, t_exit)
        direction = 1 if peak > 0 else -1
        notional = abs(peak) * avg
        net = pnl - fees - fund
        rows.append({"entry_time": entry_time, "exit_time": t_exit, "direction": direction, "size": abs(peak),
                     "entry_price": avg, "exit_price": exit_price,
                     "bars": bar_index.get_loc(t_exit) - bar_index.get_loc(entry_time),
                     "price_pnl": pnl, "fees": fees, "funding": fund, "pnl": net,
                     "return_pct": 100.0 * net / notional if notional else 0.0, "status": status})

    for t, size, price, fee in fills[["time", "size", "price", "fee"]].itertuples(index=False):
        remaining, fee_left = size, fee
        while abs(remaining) > QTY_EPS:
            if pos == 0.0:
                entry_time, pos, avg, fees, pnl, peak = t, remaining, price, fee_left, 0.0, remaining
                remaining = 0.0
            elif np.sign(remaining) == np.sign(pos):
                avg = (avg * abs(pos) + price * abs(remaining)) / (abs(pos) + abs(remaining))
                pos += remaining
                fees += fee_left
                peak = pos if abs(pos) > abs(peak) else peak
                remaining = 0.0
            else:
                qty = min(abs(remaining), abs(pos))
                part_fee = fee_left * qty / abs(remaining)
                pnl += qty * (price - avg) * np.sign(pos)
                fees += part_fee
                fee_left -= part_fee
                pos -= np.sign(pos) * qty
                remaining -= np.sign(remaining) * qty
                if abs(pos) <= QTY_EPS:
                    pos = 0.0
                    close(t, price, "closed")
    if pos != 0.0:
        pnl += pos * (last_close - avg)
        close(bar_index[-1], last_close, "open")
    return pd.DataFrame(rows, columns=TRADE_COLUMNS)
