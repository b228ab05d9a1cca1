"""Isolated-margin maths for USDT-margined linear perpetuals: maintenance tiers, liquidation price and fee.

Pure functions over floats, shared by the Backtrader broker and the reference accountant.

- **Maintenance margin** comes from a tier ("bracket") table by position notional, as Binance publishes it:
  ``MM = notional x rate(tier) - amount(tier)``. The maintenance amount (Binance's ``cum``) comes with the
  market's rules, or follows from the table (``amount_k = amount_{k-1} + floor_k x (rate_k - rate_{k-1})``),
  which makes MM continuous in the notional. BTC table: 40,000 USDT notional needs 0.4 % = 160 USDT; 100,000 USDT needs
  100,000 x 0.5 % - 50 = 450 USDT.
- **Margin balance** of an isolated position = its margin (``|size| x entry / leverage``, set at entry) + its
  unrealised PnL at the price looked at. Fees and funding are settled in the wallet, not in the position's margin.
- **Liquidation** when the margin balance at the bar's adverse mark extreme falls below maintenance; the
  position is closed at the *liquidation price*, where margin balance equals maintenance. A long of 1 at 100
  with 20x leverage (margin 5) on the BTC table: ``P = (100 - 5) / (1 - 0.004) = 95.3815``.
- **Liquidation fee**: ``rate x notional`` at the liquidation price, capped at what is left of the position's
  margin there (its maintenance margin): an isolated position never costs more than its margin.
- **Leverage limit per tier**: a position may not be held above its tier's published max leverage (BTC 2021:
  125x below 50,000 USDT, 20x from 1,000,000); an order that would break it is rejected whole.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import NamedTuple

from data_feeds.errors import DataError
from data_feeds.market_rules import MarketRules, default_rules, load_rules


@dataclass(frozen=True)
class MarginTable:
    """Maintenance-margin tiers: ``floors[k]`` is the lowest notional (USDT) of tier k, ``rates[k]`` its rate,
    ``amounts[k]`` its maintenance amount (Binance's ``cum``) and ``max_leverages[k]`` the highest leverage a
    position of that tier may use. Amounts left out follow from continuity; leverages left out default to
    ``1 / (2 x rate)`` (Binance's initial margin = 2 x maintenance convention of 2021).

    >>> table = MarginTable(floors=(0, 50_000), rates=(0.004, 0.005))
    >>> table.maintenance(100_000)          # 100,000 x 0.5 % - 50
    450.0
    """

    floors: tuple[float, ...]
    rates: tuple[float, ...]
    amounts: tuple[float, ...] = ()
    max_leverages: tuple[float, ...] = ()

    def __post_init__(self):
        if len(self.floors) != len(self.rates) or not self.floors or self.floors[0] != 0:
            raise ValueError("a margin table needs one rate per tier and its first tier must start at 0")
        if any(b <= a for a, b in zip(self.floors, self.floors[1:])):
            raise ValueError(f"tier floors must increase: {self.floors}")
        if any(not 0 < r < 1 for r in self.rates) or any(b < a for a, b in zip(self.rates, self.rates[1:])):
            raise ValueError(f"maintenance rates must be in (0, 1) and not decrease: {self.rates}")
        if not self.amounts:
            amounts = [0.0]
            for k in range(1, len(self.rates)):
                amounts.append(amounts[-1] + self.floors[k] * (self.rates[k] - self.rates[k - 1]))
            object.__setattr__(self, "amounts", tuple(amounts))
        if not self.max_leverages:
            object.__setattr__(self, "max_leverages", tuple(1.0 / (2.0 * r) for r in self.rates))
        if len(self.amounts) != len(self.rates) or len(self.max_leverages) != len(self.rates):
            raise ValueError("a margin table needs one maintenance amount and one max leverage per tier")

    def tier(self, notional: float) -> int:
        """Index of the tier holding ``notional``: tier k holds ``(floor_k, floor_{k+1}]`` as Binance's brackets
        (``notionalFloor``, ``notionalCap``] do, so a notional on a floor belongs to the tier below it."""
        return max(bisect.bisect_left(self.floors, abs(notional)) - 1, 0)

    def maintenance(self, notional: float) -> float:
        """Maintenance margin in USDT for a position of ``notional`` USDT (sign ignored)."""
        k = self.tier(notional)
        return abs(notional) * self.rates[k] - self.amounts[k]


def table_from_rules(rules: MarketRules) -> MarginTable:
    """The margin table of a market's leverage tiers (rates, Binance ``cum`` amounts, max leverages)."""
    tiers = rules.tiers or default_rules(rules.exchange, rules.symbol).tiers
    return MarginTable(floors=tuple(t.floor for t in tiers), rates=tuple(t.maintenance_rate for t in tiers),
                       amounts=tuple(t.maintenance_amount for t in tiers),
                       max_leverages=tuple(t.max_leverage for t in tiers))


# Binance USDT-M BTCUSDT tiers as announced on 2021-03-18 (the shipped snapshot
# data_feeds/sample/binanceusdm_BTC-USDT-USDT_market.json carries the same table with its source).
BTC_TABLE = MarginTable(
    floors=(0, 50_000, 250_000, 1_000_000, 10_000_000, 20_000_000, 50_000_000, 100_000_000, 200_000_000,
            300_000_000),
    rates=(0.004, 0.005, 0.01, 0.025, 0.05, 0.10, 0.125, 0.15, 0.25, 0.50),
    amounts=(0, 50, 1_300, 16_300, 266_300, 1_266_300, 2_516_300, 5_016_300, 25_016_300, 100_016_300),
    max_leverages=(125, 100, 50, 20, 10, 5, 4, 3, 2, 1))
# Binance's ETHUSDT tiers of March 2021 (see the ETH snapshot for the source).
ETH_TABLE = MarginTable(
    floors=(0, 10_000, 100_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000),
    rates=(0.005, 0.0065, 0.01, 0.02, 0.05, 0.10, 0.125, 0.15, 0.25),
    amounts=(0, 15, 365, 5_365, 35_365, 135_365, 260_365, 510_365, 2_510_365),
    max_leverages=(100, 75, 50, 25, 10, 5, 4, 3, 2))
# Any other market without rules: Binance's tiers for its 50x alt-coin perpetuals (2021-03-18), the
# conservative default of :func:`data_feeds.market_rules.default_rules`.
DEFAULT_TABLE = MarginTable(
    floors=(0, 5_000, 25_000, 100_000, 250_000, 1_000_000),
    rates=(0.01, 0.025, 0.05, 0.10, 0.125, 0.50),
    max_leverages=(50, 20, 10, 5, 2, 1))


@dataclass(frozen=True)
class TradingRules:
    """The broker's view of a market's :class:`~data_feeds.market_rules.MarketRules`: quantity step, minimum
    quantity and notional (an order below them is refused), the margin table, the liquidation fee rate (None:
    the broker config's) and the record itself (``rules.is_default``: no rules were known).

    ``qty_step=0.001``: sizes are multiples of 0.001 BTC; 0.0 means "not known, no rounding".
    """

    qty_step: float = 0.0
    min_qty: float = 0.0
    margin_table: MarginTable = DEFAULT_TABLE
    min_notional: float = 0.0
    liquidation_fee: float | None = None
    rules: MarketRules | None = None
    price_tick: float = 0.0


def trading_rules(rules: MarketRules) -> TradingRules:
    """:class:`TradingRules` from a market's rules record. A market whose contract is not one unit of the base
    asset is refused (see :func:`check_contract_size`)."""
    check_contract_size(rules)
    return TradingRules(qty_step=rules.qty_step, min_qty=rules.min_qty, margin_table=table_from_rules(rules),
                        min_notional=rules.min_notional, liquidation_fee=rules.liquidation_fee, rules=rules,
                        price_tick=rules.price_tick)


def check_contract_size(rules: MarketRules) -> None:
    """Refuse, in one line, a market whose contract size is not 1: lstmbt counts sizes in base units (notional =
    size x price), which is right only for linear contracts of one base unit (Binance and Bybit USDT perpetuals;
    ccxt ``contractSize`` 1). Rather than price such a market wrongly, the run stops with a :class:`DataError`."""
    if abs(rules.contract_size - 1.0) > 1e-12:
        raise DataError(f"{rules.exchange} {rules.symbol} has contract size {rules.contract_size:g} (ccxt "
                        f"contractSize); lstmbt accounts only contracts of one base unit (notional = size x price): "
                        f"not supported")


def fee_rates(config, rules: "TradingRules | None") -> tuple[float, float, str]:
    """(taker, maker, where from) fee rates of a run: the market's stored fees (ccxt ``taker``/``maker`` of
    ``load_markets()``) when the config leaves them to the market (``fee_source="auto"``: the user set neither
    fee) and the rules carry both; otherwise the config's. BTCUSDT snapshot: taker 0.0005, maker 0.0002."""
    r = rules.rules if rules is not None else None
    if (getattr(config, "fee_source", "config") == "auto" and r is not None
            and r.taker_fee is not None and r.maker_fee is not None):
        where = f"market rules of {r.exchange} {r.symbol}" + (f" ({r.fetched})" if r.fetched else "")
        return r.taker_fee, r.maker_fee, where[:200]
    if getattr(config, "fee_source", "config") == "auto":
        return config.taker_fee, config.maker_fee, "defaults (Binance USDT-M base tier; the market's rules carry no fees)"
    return config.taker_fee, config.maker_fee, config.fee_source if config.fee_source != "config" else "set by the user"


def to_tick(price: float, tick: float, up: bool) -> float:
    """``price`` on the tick grid, rounded up (``up``) or down; unchanged when ``tick`` is 0 (unknown) or the
    price is not finite.

    Prices within 1e-9 of a tick count as on it (floating-point noise): BTC (tick 0.1): 60,000.06 up is
    60,000.1, down 60,000.0; 60,000.1 stays 60,000.1 either way.
    """
    if not tick or not math.isfinite(price):
        return price
    steps = price / tick
    near = round(steps)
    if abs(steps - near) <= 1e-9 * max(1.0, abs(steps)):
        return near * tick
    return (math.ceil(steps) if up else math.floor(steps)) * tick


def market_rules(symbol: str | None, exchange: str = "binanceusdm", *, store_dir=None, path=None) -> TradingRules:
    """Rules of a market by ccxt symbol (see :func:`data_feeds.market_rules.load_rules`: a user's file, the store,
    the shipped snapshot, else flagged conservative defaults)."""
    return trading_rules(load_rules(exchange, symbol or "UNKNOWN/USDT:USDT", store_dir=store_dir, path=path))


def below_minimum(held: float, size: float, price: float, rules: TradingRules) -> str:
    """Why an order of ``size`` at ``price`` on a position of ``held`` is under the market's minimums ("" if not).

    As on Binance, the minimum quantity and minimum order value (``MIN_NOTIONAL``) apply to orders that open or
    add to a position (a flip included, by its whole size); an order that only reduces or closes is exempt
    (Binance's reduce-only / close-position orders). BTC: 0.001 BTC and 100 USDT.
    """
    new = held + size
    if size == 0.0 or new == 0.0 or (held != 0.0 and (new > 0) == (held > 0) and abs(new) < abs(held)):
        return ""
    if abs(size) < rules.min_qty * (1 - 1e-9):
        return f"size {abs(size):.6g} below the market's minimum quantity {rules.min_qty:g}"
    if abs(size) * price < rules.min_notional * (1 - 1e-9):
        return f"order value {abs(size) * price:.6g} USDT below the market's minimum {rules.min_notional:g} USDT"
    return ""


def minimum_cost(rules: TradingRules, price: float, leverage: float, fee_rate: float) -> float:
    """Cash the smallest allowed new position needs at ``price``: its initial margin plus the taker fee
    (BTC at 60,000 with 1x: 100 USDT of notional, 100 + 0.05 = 100.05 USDT); 0 when the market has no minimum."""
    notional = max(rules.min_notional, rules.min_qty * price)
    return notional * (1.0 / leverage + fee_rate)


def max_leverage(notional: float, table: MarginTable) -> float:
    """Highest leverage allowed for a position of ``notional`` USDT: its tier's max leverage as the exchange
    publishes it (BTC: 125x below 50,000 USDT, 100x to 250,000, 50x to 1,000,000, ...)."""
    return table.max_leverages[table.tier(notional)]


def leverage_allowed(notional: float, leverage: float, table: MarginTable) -> bool:
    """Whether a position of ``notional`` may be held at ``leverage`` (see :func:`max_leverage`).

    It also guarantees that a new position starts above maintenance, so its liquidation price lies on the
    adverse side of its entry.
    """
    return leverage <= max_leverage(notional, table) * (1.0 + 1e-9)


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
                     fee_rate: float, model: str = "flat", tick: float = 0.0) -> tuple[float, float]:
    """(price, fee) of the full liquidation of a position found in a bar that opened at ``open_price``.

    The position is taken over at :func:`liquidation_price` put on the market's tick grid on the trader's adverse
    side (a long's rounded down, a short's up: mark prices move on the grid, so the first one at which a falling
    mark makes a long liquidatable is the tick at or below its liquidation price), or at the open when the bar
    already opened beyond it (a gap, or funding taken from the margin at the open moved it), never beyond the
    bankruptcy price ``entry - margin / size``, where the isolated margin is gone: an isolated position loses at
    most its margin, the exchange's insurance fund takes the rest. What is left of the margin there, ``left``,
    decides the rest:

    - ``model="binance"`` (Binance's liquidation protocols, FAQ 360033525271): the liquidation ("insurance
      clearance") fee is ``fee_rate x notional``. If ``left`` covers it the position is margin-compliant: it
      closes at that price, pays the fee and the trader keeps ``left - fee``. Otherwise it is margin-deficient:
      it is closed at the bankruptcy price and the remaining collateral (``left``) goes to the insurance fund;
      the trader keeps nothing and pays no further fee. The bankruptcy close is a transfer to the insurance
      fund, not an order on the book: its price is exact, not on the tick grid, so exactly the margin is lost.
    - ``model="flat"``: it closes at that price and pays ``fee_rate x notional`` capped at the maintenance margin
      and at ``left`` (the same loss as "binance", booked as a fee at the liquidation price).

    Long 1 at 100 with margin 5 (BTC table), no gap: liquidation price 95.3815, left 0.3815 (its maintenance
    margin) < 1.25 % x 95.38 = 1.19: "binance" closes at the bankruptcy price 95 with no fee; "flat" at 95.3815
    with a fee of 0.3815. Either way 5 is lost. Opening at 94: 95 and no fee in both.
    """
    price, bankrupt = _takeover_price(size, entry, margin, open_price, table, tick)
    left = max(margin + size * (price - entry), 0.0)
    if model == "binance":
        fee = fee_rate * abs(size) * price
        return (price, fee) if left >= fee else (bankrupt, 0.0)
    return price, min(liquidation_fee(size, price, fee_rate, table), left)


def _takeover_price(size: float, entry: float, margin: float, open_price: float, table: MarginTable,
                    tick: float) -> tuple[float, float]:
    """(price a liquidation order executes at, bankruptcy price): see :func:`liquidation_exit`."""
    liq = to_tick(liquidation_price(size, entry, margin, table), tick, up=size < 0)
    gapped = open_price < liq if size > 0 else open_price > liq
    price = open_price if gapped else liq
    # where the isolated margin is gone; funding can take more than the initial margin out of a position in profit
    # (margin < 0): its bankruptcy price then lies on the profit side of the entry, so it still loses just its margin
    bankrupt = entry - margin / size
    return (max(price, bankrupt) if size > 0 else min(price, bankrupt)), bankrupt


class LiquidationStep(NamedTuple):
    """One execution of a liquidation: ``size`` (signed, against the position), ``price``, ``fee`` (USDT), what
    is left of the isolated margin after it (``margin``: the remaining position's margin; 0 when it closed) and
    ``partial`` (the remaining position stays open)."""

    size: float
    price: float
    fee: float
    margin: float
    partial: bool


def liquidation_steps(size: float, entry: float, margin: float, open_price: float, adverse: float,
                      table: MarginTable, fee_rate: float, model: str = "binance", tick: float = 0.0,
                      qty_step: float = 0.0) -> list[LiquidationStep]:
    """The executions that liquidate a position whose margin balance at the bar's ``adverse`` mark extreme is
    below maintenance (empty when it is not), in a bar that opened at ``open_price``.

    Binance's protocol (``model="binance"``; "Liquidation Protocols", FAQ 360033525271, and its copy on Binance's
    TraderWagon docs, docs.traderwagon.com/faq/futures-trading-introduction/liquidation-protocol) says: Binance
    "avoids full liquidation of a user's position whenever possible"; it "attempt[s] to reduce the user's margin
    limit with one large Immediate or Cancel order without fully liquidating the user"; the fee is charged "on the
    amount liquidated only"; "if the user is margin compliant after calculating the realized losses and
    liquidation fee deductions, the liquidation will stop"; if still margin-deficient, the position "will be
    closed at the bankruptcy price" and the remaining collateral goes to the insurance fund. What the documents do
    not say, and lstmbt assumes:

    - *how much* the IOC order closes: enough to bring the position down one leverage tier, to the largest size on
      the quantity step whose notional at the execution price is at most the tier's floor (the top of the tier
      below, where the maintenance rate is lower). A position in the first tier has no lower tier: it is
      liquidated whole (:func:`liquidation_exit`, fee or bankruptcy close);
    - the realised loss and the fee of that partial close come out of the position's isolated margin (nothing of
      it is released); the rest stays open with the margin left;
    - the check is repeated for the rest within the same bar: if the bar's adverse extreme also breaches the
      smaller position's own liquidation price, it is liquidated again by the same rules;
    - a margin-deficient result closes the *whole* position at its bankruptcy price with no fee: the IOC part's
      loss and fee plus the rest's bankruptcy loss add up to exactly the isolated margin, which is what a
      single bankruptcy close of the whole position loses, so one fill records it.

    With continuous maintenance amounts, reducing from notional N in tier k to the floor F_k leaves the margin
    ``(rate_k - fee_rate) x (N - F_k)`` above maintenance, so a partial liquidation holds exactly when the tier's
    maintenance rate is at least the clearance fee rate (BTC 2021 tiers with a 1.25 % fee: from tier 4, 2.5 %).
    Long 20 BTC at 60,000, 10x (margin 120,000, notional 1.2M in tier 4: 2.5 %, cum 16,300): liquidation price
    54,548.72; 18.332 BTC stay (1,000,000 / 54,548.72 on the 0.001 step), 1.668 close at 54,548.72 for a loss of
    9,092.7 and a fee of 1,137.3, leaving a margin of 109,769.9 on a position of 999,987 USDT (tier 3: 1 %, cum
    1,300) whose maintenance margin is 8,699.9. A mark low of 54,000 then breaches the rest's own liquidation
    price (54,486.06); tier 3's 1 % is below the 1.25 % fee, so the rest is margin-deficient and closes at its
    bankruptcy price 60,000 - 109,769.9 / 18.332 = 54,012.11 with no fee.

    ``model="flat"``: always one full close (:func:`liquidation_exit`).
    """
    steps: list[LiquidationStep] = []
    while size != 0.0 and is_liquidated(size, entry, margin, adverse, table):
        price, bankrupt = _takeover_price(size, entry, margin, open_price, table, tick)
        k = table.tier(abs(size) * price)
        if model == "binance" and k > 0:
            keep = table.floors[k] / price
            if keep * price > table.floors[k]:
                keep = math.nextafter(keep, 0.0)
            if qty_step:
                keep = math.floor(keep / qty_step * (1 + 1e-12)) * qty_step
                while keep * price > table.floors[k]:
                    keep -= qty_step
            if keep > 0.0:
                rest = math.copysign(keep, size)
                closed = size - rest
                fee = fee_rate * abs(closed) * price
                left = margin + closed * (price - entry) - fee
                if left + rest * (price - entry) >= table.maintenance(abs(rest) * price):
                    steps.append(LiquidationStep(-closed, price, fee, left, True))
                    size, margin = rest, left
                    continue
                steps.append(LiquidationStep(-size, bankrupt, 0.0, 0.0, False))
                return steps
        price, fee = liquidation_exit(size, entry, margin, open_price, table, fee_rate, model, tick)
        steps.append(LiquidationStep(-size, price, fee, 0.0, False))
        return steps
    return steps


def liquidation_fee_rate(config_rate: float | None, rules: "TradingRules | None") -> float:
    """The liquidation fee rate a run uses: the config's if set, else the market's (Binance ``liquidationFee``),
    else 0.0125 (Binance's 1.25 % on BTCUSDT, ETHUSDT and XRPUSDT)."""
    if config_rate is not None:
        return config_rate
    if rules is not None and rules.liquidation_fee is not None:
        return rules.liquidation_fee
    return 0.0125


def funding_kept(held: float, size_before: float, size_after: float) -> float:
    """Funding the position has paid out of its isolated margin that stays with it after a fill changed its
    size: all of it when it grows, the remaining share when it shrinks (half closed: half kept), none when it
    closes or flips (the new position starts with fresh margin)."""
    if size_after == 0.0 or size_before == 0.0 or (size_after > 0) != (size_before > 0):
        return 0.0
    if abs(size_after) >= abs(size_before):
        return held
    return held * abs(size_after) / abs(size_before)
