"""Isolated-margin maths for USDT-margined linear perpetuals: maintenance tiers, liquidation price and fee.

Pure functions over floats, shared by the Backtrader broker and the reference accountant.

- **Maintenance margin** comes from a tier ("bracket") table by position notional, as Binance publishes it:
  ``MM = notional x rate(tier) - amount(tier)``. The maintenance amount is not stored: it follows from the
  table (``amount_k = amount_{k-1} + floor_k x (rate_k - rate_{k-1})``), which makes MM continuous in the
  notional. BTC table: 40,000 USDT notional needs 0.4 % = 160 USDT; 100,000 USDT needs
  100,000 x 0.5 % - 50 = 450 USDT.
- **Margin balance** of an isolated position = its margin (``|size| x entry / leverage``, set at entry) + its
  unrealised PnL at the price looked at. Fees and funding are settled in the wallet, not in the position's margin.
- **Liquidation** when the margin balance at the bar's adverse mark extreme falls below maintenance; the
  position is closed at the *liquidation price*, where margin balance equals maintenance. A long of 1 at 100
  with 20x leverage (margin 5) on the BTC table: ``P = (100 - 5) / (1 - 0.004) = 95.3815``.
- **Liquidation fee**: ``rate x notional`` at the liquidation price, capped at what is left of the position's
  margin there (its maintenance margin): an isolated position never costs more than its margin.
- **Leverage limit per tier**: a position may not be held at more than ``1 / (2 x rate)`` of its tier (Binance's
  rule: 125x below 50,000 USDT of BTC, 20x from 1,000,000); an order that would break it is rejected whole.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MarginTable:
    """Maintenance-margin tiers: ``floors[k]`` is the lowest notional (USDT) of tier k, ``rates[k]`` its rate.

    >>> table = MarginTable(floors=(0, 50_000), rates=(0.004, 0.005))
    >>> table.maintenance(100_000)          # 100,000 x 0.5 % - 50
    450.0
    """

    floors: tuple[float, ...]
    rates: tuple[float, ...]
    amounts: tuple[float, ...] = field(init=False)

    def __post_init__(self):
        if len(self.floors) != len(self.rates) or not self.floors or self.floors[0] != 0:
            raise ValueError("a margin table needs one rate per tier and its first tier must start at 0")
        if any(b <= a for a, b in zip(self.floors, self.floors[1:])):
            raise ValueError(f"tier floors must increase: {self.floors}")
        if any(not 0 < r < 1 for r in self.rates) or any(b < a for a, b in zip(self.rates, self.rates[1:])):
            raise ValueError(f"maintenance rates must be in (0, 1) and not decrease: {self.rates}")
        amounts = [0.0]
        for k in range(1, len(self.rates)):
            amounts.append(amounts[-1] + self.floors[k] * (self.rates[k] - self.rates[k - 1]))
        object.__setattr__(self, "amounts", tuple(amounts))

    def tier(self, notional: float) -> int:
        """Index of the tier holding ``notional`` (a notional on a floor belongs to the tier it starts)."""
        return bisect.bisect_right(self.floors, abs(notional)) - 1

    def maintenance(self, notional: float) -> float:
        """Maintenance margin in USDT for a position of ``notional`` USDT (sign ignored)."""
        k = self.tier(notional)
        return abs(notional) * self.rates[k] - self.amounts[k]


# Binance USDT-M BTCUSDT tiers as announced on 2021-03-18 (Binance adjusts them from time to time; for a
# current copy use ccxt's ``fetch_leverage_tiers``).
BTC_TABLE = MarginTable(
    floors=(0, 50_000, 250_000, 1_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 200_000_000,
            300_000_000),
    rates=(0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50))
# An approximation of Binance's ETHUSDT tiers of the same period; check it against the exchange before trusting
# results that live near liquidation.
ETH_TABLE = MarginTable(
    floors=(0, 10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000),
    rates=(0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25))
# Any other market: Binance's tiers for its 50x alt-coin perpetuals (2021-03-18), a conservative default.
DEFAULT_TABLE = MarginTable(
    floors=(0, 5_000, 25_000, 100_000, 250_000, 1_000_000),
    rates=(0.01, 0.025, 0.05, 0.10, 0.125, 0.50))


@dataclass(frozen=True)
class MarketRules:
    """What the exchange imposes on one market: quantity step and minimum (contracts) and margin tiers.

    ``qty_step=0.001``: sizes are multiples of 0.001 BTC; 0.0 means "not known, no rounding".
    """

    qty_step: float = 0.0
    min_qty: float = 0.0
    margin_table: MarginTable = DEFAULT_TABLE


MARKETS: dict[str, MarketRules] = {
    "BTC/USDT:USDT": MarketRules(qty_step=0.001, min_qty=0.001, margin_table=BTC_TABLE),
    "ETH/USDT:USDT": MarketRules(qty_step=0.001, min_qty=0.001, margin_table=ETH_TABLE),
}


def market_rules(symbol: str | None) -> MarketRules:
    """Rules of a Binance USDT-M market by ccxt symbol; unknown symbols get no rounding and the default tiers."""
    return MARKETS.get(symbol or "", MarketRules())


def max_leverage(notional: float, table: MarginTable) -> float:
    """Highest leverage allowed for a position of ``notional`` USDT: ``1 / (2 x maintenance rate)`` of its tier,
    Binance's rule (BTC: 125x below 50,000 USDT, 100x to 250,000, 50x to 1,000,000, ...)."""
    return 1.0 / (2.0 * table.rates[table.tier(notional)])


def leverage_allowed(notional: float, leverage: float, table: MarginTable) -> bool:
    """Whether a position of ``notional`` may be held at ``leverage`` (see :func:`max_leverage`).

    It also guarantees that a new position starts above maintenance, so its liquidation price lies on the
    adverse side of its entry.
    """
    return 2.0 * table.rates[table.tier(notional)] * leverage <= 1.0 + 1e-9


def margin_balance(size: float, entry: float, margin: float, price: float) -> float:
    """Isolated margin balance in USDT at ``price``: ``margin + size x (price - entry)``.

    Long 1 at 100 with margin 5, at 97: ``5 + 1 x (97 - 100) = 2``.
    """
    return margin + size * (price - entry)


def is_liquidated(size: float, entry: float, margin: float, price: float, table: MarginTable) -> bool:
    """Whether the position's margin balance at ``price`` is below its maintenance margin there."""
    if size == 0.0:
        return False
    return margin_balance(size, entry, margin, price) < table.maintenance(size * price)


def liquidation_price(size: float, entry: float, margin: float, table: MarginTable) -> float:
    """The price where margin balance equals maintenance margin (``nan`` when there is none above 0).

    Within tier k, ``margin + size (P - entry) = |size| P rate_k - amount_k`` gives
    ``P = (size x entry - margin - amount_k) / (size - |size| x rate_k)``; the root is unique because the
    balance minus maintenance is monotonic in P, so the tier whose notional range holds ``|size| x P`` is it.
    Long 1000 at 100, margin 5,000 (20x), BTC table: tier 2 (0.5 %, amount 50), ``P = 94,950 / 995 = 95.4271``.
    """
    if size == 0.0:
        return float("nan")
    mag = abs(size)
    for k, (rate, amount) in enumerate(zip(table.rates, table.amounts)):
        price = (size * entry - margin - amount) / (size - mag * rate)
        if price <= 0.0:
            continue
        lo = table.floors[k]
        hi = table.floors[k + 1] if k + 1 < len(table.floors) else float("inf")
        notional = mag * price
        if lo * (1 - 1e-12) <= notional < hi * (1 + 1e-12):
            return price
    return float("nan")


def liquidation_fee(size: float, price: float, rate: float, table: MarginTable) -> float:
    """Fee in USDT for liquidating ``size`` at ``price``: ``rate x notional``, capped at the maintenance margin.

    Long 1 at the liquidation price 95.3815 (BTC table): MM = 0.4 % x 95.3815 = 0.38153; a 1.25 % fee
    (1.19227) is capped to 0.38153, so the trader loses exactly the position's margin.
    """
    notional = abs(size) * price
    return min(rate * notional, table.maintenance(notional))


def liquidation_exit(size: float, entry: float, margin: float, open_price: float, table: MarginTable,
                     fee_rate: float) -> tuple[float, float]:
    """(price, fee) of a liquidation found in a bar that opened at ``open_price``.

    Normally the position closes at :func:`liquidation_price` and pays :func:`liquidation_fee`. When the bar
    already opened beyond that price (a gap, or funding taken from the margin at the open moved it), it closes
    at the open instead, but never beyond the bankruptcy price, where the isolated margin is gone: an isolated
    position loses at most its margin, the exchange's insurance fund takes the rest. The fee is what is left
    of the margin at the exit, at most the normal fee.
    Long 1 at 100 with margin 5 (BTC table), bar opens at 94: liquidation price 95.38, so it closes at the
    bankruptcy price 95 (loss 5, fee 0); opening at 95.2 it closes there (loss 4.8, fee 0.2).
    """
    liq = liquidation_price(size, entry, margin, table)
    gapped = open_price < liq if size > 0 else open_price > liq
    price = open_price if gapped else liq
    bankrupt = entry - max(margin, 0.0) / size
    price = max(price, bankrupt) if size > 0 else min(price, bankrupt)
    left = max(margin + size * (price - entry), 0.0)
    return price, min(liquidation_fee(size, price, fee_rate, table), left)


def funding_kept(held: float, size_before: float, size_after: float) -> float:
    """Funding the position has paid out of its isolated margin that stays with it after a fill changed its
    size: all of it when it grows, the remaining share when it shrinks (half closed: half kept), none when it
    closes or flips (the new position starts with fresh margin)."""
    if size_after == 0.0 or size_before == 0.0 or (size_after > 0) != (size_before > 0):
        return 0.0
    if abs(size_after) >= abs(size_before):
        return held
    return held * abs(size_after) / abs(size_before)
