"""PnL attribution: where the change in equity came from, in USDT, summing exactly to it.

Each term is a contribution to equity (a cost is negative):

- ``price``: PnL of price moves at the reference prices (market fills at the bar's open, before slippage),
  for every position except the part a liquidation closes;
- ``fees_taker``, ``fees_maker``: trading fees by liquidity;
- ``slippage``: what fills lost against their reference price;
- ``funding``: funding received minus paid;
- ``liquidation``: for liquidated positions, the realised loss from their entry to the liquidation price plus
  the liquidation fee.

``price + fees_taker + fees_maker + slippage + funding + liquidation = final equity - starting cash``.

Worked example: buy 1 at 100 (open 99.9, taker fee 0.05), sell 1 at 109.9 (open 110, fee 0.05):
price = 110 - 99.9 = 10.1, slippage = -0.2, fees_taker = -0.1, total 9.8 = 109.9 - 100 - 0.1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Mapping

ATTRIBUTION_TERMS = ("price", "fees_taker", "fees_maker", "slippage", "funding", "liquidation")


@dataclass(frozen=True)
class Attribution:
    """Contributions to the change in equity, in USDT (see the module docstring)."""

    price: float = 0.0
    fees_taker: float = 0.0
    fees_maker: float = 0.0
    slippage: float = 0.0
    funding: float = 0.0
    liquidation: float = 0.0

    @property
    def total(self) -> float:
        """Sum of the terms: the change in equity over the run."""
        return self.price + self.fees_taker + self.fees_maker + self.slippage + self.funding + self.liquidation

    def as_dict(self) -> dict[str, float]:
        """Plain dict of the terms plus ``total`` (for JSON reports)."""
        return {**asdict(self), "total": self.total}


def _liquidity(fill: Mapping) -> str:
    if "liquidity" in fill:
        return fill["liquidity"]
    kind = fill.get("kind", "market")
    return "liquidation" if kind == "liquidation" else "maker" if kind == "limit" else "taker"


def attribute_pnl(fills: Iterable[Mapping], funding_paid: float, final_size: float,
                  final_price: float) -> Attribution:
    """Attribution of a run from its fills in time order.

    ``fills``: mappings with ``size`` (signed contracts), ``price``, ``fee`` (USDT), ``slippage`` (USDT lost
    against the reference price, ``size x (price - reference)``) and ``liquidity`` ("taker", "maker",
    "liquidation"; inferred from ``kind`` when absent). ``funding_paid``: net funding paid (negative when
    received). ``final_size`` / ``final_price``: the position left open and the last close it is valued at.
    """
    cash_flow = slip = taker = maker = liq_fees = liq_realised = 0.0
    pos = avg = 0.0
    for fill in fills:
        size, price, fee = fill["size"], fill["price"], fill["fee"]
        liquidity = _liquidity(fill)
        cash_flow -= size * price
        slip += fill["slippage"]
        if liquidity == "liquidation":
            liq_fees += fee
            closed = min(abs(size), abs(pos))
            liq_realised += closed * (price - avg) * (1.0 if pos > 0 else -1.0)
        elif liquidity == "maker":
            maker += fee
        else:
            taker += fee
        pos, avg = _update_position(pos, avg, size, price)
    price_pnl = cash_flow + final_size * final_price + slip - liq_realised
    return Attribution(price=price_pnl, fees_taker=-taker, fees_maker=-maker, slippage=-slip,
                       funding=-funding_paid, liquidation=liq_realised - liq_fees)


def _update_position(pos: float, avg: float, size: float, price: float) -> tuple[float, float]:
    """Position and average entry price after a fill (Backtrader's rule: adding averages, a flip restarts)."""
    new = pos + size
    if new == 0.0:
        return 0.0, 0.0
    if pos == 0.0 or (new > 0) != (pos > 0):
        return new, price
    if (size > 0) == (pos > 0):
        return new, (avg * pos + size * price) / new
    return new, avg
