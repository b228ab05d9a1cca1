"""One account over several USDT-margined perpetuals, in isolated or cross margin: pure maths over floats.

Shared by :class:`backtests.portfolio.broker.PortfolioBroker` and the portfolio reference accountant
(:mod:`backtests.portfolio.reference`). Isolated mode delegates each position to :mod:`backtests.margin`, so a
one-symbol isolated portfolio follows exactly the single-symbol rules.

Binance's documented rules (USDⓈ-M futures), quoted in README "Portfolios: cross and isolated margin":

- **Margin balance** = wallet balance + unrealised PnL at the mark price; **margin ratio** = maintenance margin /
  margin balance, and a liquidation is triggered when it reaches 100 % (Binance FAQ "Liquidation Protocols",
  360033525271). In **cross** mode the wallet is the cross wallet balance, the unrealised PnL and maintenance
  margin are those of *all* cross positions (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures
  Contracts", b3c689c1f50a44cabb3a84e663b81d93: ``WB`` = crossWalletBalance, ``TMM1`` / ``UPNL1`` = maintenance
  margin / unrealised PnL of all other contracts); in **isolated** mode ``WB`` is the position's isolated wallet
  balance and ``TMM = UPNL = 0``: each position stands alone.
- Each position's maintenance margin comes from *its own* tier table: ``notional x rate(tier) - amount(tier)``.
- **Available balance** for a new order: margin balance - initial margins of the positions held
  (``availableBalance`` of ``GET /fapi/v2/account``: crossWalletBalance + cross unrealised PnL - cross initial
  margins); isolated positions' unrealised PnL is not part of it (:func:`available_balance`). An order whose
  opening part (initial margin + taker fee) it cannot pay is refused, never resized.

Where the documents are silent, the choices made here:

- **One bar, several symbols** (:func:`worst_prices`): a bar's candles do not say *when* each symbol reached its
  extreme, so the cross check is conservative: every position at its adverse mark extreme at once (longs at their
  mark low, shorts at their mark high). Two symbols that swung against the account at different minutes of the
  bar count as if together; a liquidation is never missed, one may be found that an exchange would not have made.
  For one position this is exactly the isolated check.
- **What is liquidated first, and at which price** (:func:`cross_liquidation`): every cross position, together.
  Binance's protocol reduces with one large order and stops once the account is margin-compliant, but it says that
  accounts whose maintenance margin is below the liquidation fee (all but very large ones: 0.4 % maintenance on
  BTC against a 1.25 % fee) "will almost always be fully liquidated". The breach point is found on a straight path
  from each symbol's open (clipped into its mark range) to its adverse extreme, all moving together
  (``price_i(t) = start_i + t x (adverse_i - start_i)``): the first ``t`` where margin balance = total maintenance.
  For one position that is its liquidation price. A bar that opens past the breach (a gap) liquidates at the open.
- **Liquidation fee and loss** (``model``, as :func:`backtests.margin.liquidation_exit`): ``"binance"``: the fee
  is ``rate_i x notional_i`` per symbol at its breach price; if what is left of the margin balance there pays the
  fees the account keeps the rest, otherwise it is margin-deficient: every position closes at the account's
  bankruptcy point (margin balance 0 on the same path; a bar that opened past it: on the way from the entries to
  the open) with no fee, and the insurance fund takes the rest.
  ``"flat"``: closes at the breach point with fees ``min(rate x notional, maintenance)`` per symbol, scaled down
  to what is left. The account never goes below 0 either way.

Worked number (BTC tiers 0.4 %, ETH tiers 0.5 % below 10,000 USDT): wallet 1,900, long 1 BTC at 10,000 and short
9 ETH at 1,000, 10x (initial margins 1,000 and 900). ETH rises to 1,100 and BTC to 10,600. Isolated: the ETH
short's margin balance is 900 - 900 = 0, below its maintenance 9,900 x 0.5 % = 49.5: liquidated, BTC untouched.
Cross: margin balance 1,900 + 600 - 900 = 1,600 against 10,600 x 0.4 % + 49.5 = 91.9 of maintenance (ratio
5.7 %): the hedge lives.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

from backtests.margin import LiquidationStep, MarginTable, liquidation_fee, liquidation_steps, to_tick

MARGIN_MODES = ("isolated", "cross")


class Position(NamedTuple):
    """One symbol's position: signed ``size`` (contracts), average ``entry`` price, ``mark`` (the price it was
    last valued at in the account's free cash: the previous close, or the fill that last opened; Backtrader's
    ``adjbase``) and ``held_funding`` (isolated: funding paid out of its margin, received negative)."""

    size: float = 0.0
    entry: float = 0.0
    mark: float = 0.0
    held_funding: float = 0.0


FLAT = Position()


def check_mode(margin: str) -> str:
    """``margin`` if it is "isolated" or "cross", else a ValueError naming the choices."""
    if margin not in MARGIN_MODES:
        raise ValueError(f"margin mode must be one of {', '.join(MARGIN_MODES)}, got {margin!r}")
    return margin


def unrealised(pos: Position, price: float) -> float:
    """``size x (price - entry)``: long 2 at 100, at 97: -6."""
    return pos.size * (price - pos.entry) if pos.size else 0.0


def initial_margin(pos: Position, leverage: float) -> float:
    """Initial margin held by a position: ``|size| x entry / leverage`` (1 BTC at 60,000, 5x: 12,000)."""
    return abs(pos.size) * (pos.entry * (1.0 / leverage))


def isolated_margin(pos: Position, leverage: float) -> float:
    """An isolated position's own margin: its initial margin less the funding it paid out of it."""
    return initial_margin(pos, leverage) - pos.held_funding


def margin_balance(wallet: float, positions: Mapping[str, Position], prices: Mapping[str, float]) -> float:
    """Wallet + unrealised PnL of every position at ``prices`` (mark prices for the exchange's checks)."""
    return wallet + sum(unrealised(p, prices[s]) for s, p in positions.items() if p.size)


def maintenance(positions: Mapping[str, Position], prices: Mapping[str, float],
                tables: Mapping[str, MarginTable]) -> dict[str, float]:
    """Maintenance margin per symbol at ``prices``, each from its own tier table (0.0 when flat).

    1 BTC at 10,000 on the BTC table (0.4 %): 40.0.
    """
    return {s: tables[s].maintenance(p.size * prices[s]) if p.size else 0.0 for s, p in positions.items()}


def margin_ratio(margin: str, wallet: float, positions: Mapping[str, Position], prices: Mapping[str, float],
                 tables: Mapping[str, MarginTable], leverage: float) -> float:
    """The account's margin ratio at ``prices`` (liquidation at 1.0; ``inf`` when there is nothing left).

    Cross: total maintenance / margin balance. Isolated: the highest of each open position's own ratio,
    maintenance / (isolated margin + unrealised PnL). 0.0 when flat.
    """
    mm = maintenance(positions, prices, tables)
    if margin == "cross":
        total = sum(mm.values())
        if total == 0.0:
            return 0.0
        balance = margin_balance(wallet, positions, prices)
        return total / balance if balance > 0 else float("inf")
    worst = 0.0
    for s, p in positions.items():
        if p.size:
            balance = isolated_margin(p, leverage) + unrealised(p, prices[s])
            worst = max(worst, mm[s] / balance if balance > 0 else float("inf"))
    return worst


def available_balance(wallet: float, positions: Mapping[str, Position], leverage: float, margin: str = "cross",
                      symbol: str | None = None) -> float:
    """What a new order on ``symbol`` can use: wallet + unrealised PnL at each position's ``mark`` - initial margins.

    Cross: every position's unrealised PnL counts (Binance's ``availableBalance``: cross wallet balance + cross
    unrealised PnL - cross initial margins). Isolated: only ``symbol``'s own; the other isolated positions'
    unrealised PnL stays in their own margins (Binance leaves isolated PnL out of the available balance), so one
    position's paper gain never pays another's margin, and a wallet can never be lent to positions whose losses
    together exceed it. The traded position's own PnL still counts, as in the single-symbol broker, so that a
    one-symbol portfolio trades exactly as a single-symbol run.

    Wallet 10,000, long 1 BTC at 10,000 (5x: margin 2,000) marked at 11,000 and long 10 ETH at 1,000 (2,000)
    marked at 900: cross 10,000 + 1,000 - 1,000 - 4,000 = 6,000; isolated, for ETH: 10,000 - 1,000 - 4,000 = 5,000.
    """
    total = wallet
    for s, p in positions.items():
        if p.size:
            total -= initial_margin(p, leverage)
            if margin == "cross" or s == symbol:
                total += p.size * (p.mark - p.entry)
    return total


def can_open(available: float, size: float, price: float, leverage: float, fee_rate: float) -> bool:
    """Whether ``available`` pays the initial margin and fee of opening ``size`` at ``price``.

    Opening 1 at 100 with 5x and a 0.05 % fee needs 20 + 0.05 = 20.05.
    """
    return available - abs(size) * (price * (1.0 / leverage)) - abs(size) * fee_rate * price >= 0.0


def worst_prices(positions: Mapping[str, Position], lows: Mapping[str, float],
                 highs: Mapping[str, float]) -> dict[str, float]:
    """Each position at its adverse mark extreme of the bar: a long at its low, a short at its high (all at
    once: see the module docstring). Flat symbols at their high (they do not count)."""
    return {s: (lows[s] if p.size > 0 else highs[s]) for s, p in positions.items()}


def cross_breached(wallet: float, positions: Mapping[str, Position], lows: Mapping[str, float],
                   highs: Mapping[str, float], tables: Mapping[str, MarginTable]) -> bool:
    """Whether the cross account's margin balance falls below its total maintenance margin with every
    position at its adverse mark extreme of the bar (:func:`worst_prices`)."""
    if not any(p.size for p in positions.values()):
        return False
    prices = worst_prices(positions, lows, highs)
    return margin_balance(wallet, positions, prices) < sum(maintenance(positions, prices, tables).values())


class Liquidation(NamedTuple):
    """How a liquidation closes positions: ``prices`` and ``fees`` (USDT) per liquidated symbol; ``bankrupt`` when
    the account was margin-deficient (closed at its bankruptcy point, no fee)."""

    prices: dict
    fees: dict
    bankrupt: bool


def isolated_liquidation(pos: Position, leverage: float, mark_low: float, mark_high: float, open_price: float,
                         table: MarginTable, fee_rate: float, model: str = "binance", tick: float = 0.0,
                         qty_step: float = 0.0) -> list[LiquidationStep]:
    """The executions liquidating an isolated position in this bar (empty: none): exactly the single-symbol rule,
    :func:`backtests.margin.liquidation_steps` at the adverse mark extreme (a large position first cut one tier
    down where Binance's protocol allows it, else closed at its liquidation or bankruptcy price)."""
    if not pos.size:
        return []
    adverse = mark_low if pos.size > 0 else mark_high
    return liquidation_steps(pos.size, pos.entry, isolated_margin(pos, leverage), open_price, adverse, table,
                             fee_rate, model, tick, qty_step)


def _path(positions, starts, adverse, t):
    return {s: starts[s] + t * (adverse[s] - starts[s]) for s in positions}


def _excess(wallet, positions, tables, prices) -> tuple[float, tuple]:
    """(margin balance - total maintenance, the tier of every position) at ``prices``."""
    value, tiers = wallet, []
    for s, p in positions.items():
        notional = p.size * prices[s]
        value += p.size * (prices[s] - p.entry) - tables[s].maintenance(notional)
        tiers.append(tables[s].tier(notional))
    return value, tuple(tiers)


def _breach_point(wallet, positions, tables, starts, adverse) -> float:
    """The first ``t`` in [0, 1] on the path where margin balance = total maintenance (0 if already below).

    The excess is decreasing and linear in ``t`` while no position changes tier: bisect until both ends share their
    tiers, then solve the line exactly."""
    lo, hi = 0.0, 1.0
    f_lo, tiers_lo = _excess(wallet, positions, tables, _path(positions, starts, adverse, lo))
    if f_lo < 0.0:
        return 0.0
    f_hi, tiers_hi = _excess(wallet, positions, tables, _path(positions, starts, adverse, hi))
    for _ in range(200):
        if tiers_lo == tiers_hi:
            break
        mid = 0.5 * (lo + hi)
        f_mid, tiers_mid = _excess(wallet, positions, tables, _path(positions, starts, adverse, mid))
        if f_mid < 0.0:
            hi, f_hi, tiers_hi = mid, f_mid, tiers_mid
        else:
            lo, f_lo, tiers_lo = mid, f_mid, tiers_mid
    if f_lo == f_hi:
        return lo
    return lo + (hi - lo) * f_lo / (f_lo - f_hi)


def cross_liquidation(wallet: float, positions: Mapping[str, Position], opens: Mapping[str, float],
                      lows: Mapping[str, float], highs: Mapping[str, float], tables: Mapping[str, MarginTable],
                      fee_rates: Mapping[str, float], model: str = "binance",
                      ticks: Mapping[str, float] | None = None) -> Liquidation | None:
    """Liquidate every cross position if the account breaches maintenance in this bar (:func:`cross_breached`),
    else None. Prices and fees as the module docstring says; ``ticks`` (symbol -> price tick, 0: none) put each
    breach price on its market's grid on the trader's adverse side, as an isolated liquidation price is (a
    bankruptcy close is a transfer to the insurance fund, at its exact price).

    One long of 1 at 100, wallet 5 (as 20x isolated), BTC table, mark low 95, open 100: the breach is at
    ``(100 - 5) / (1 - 0.004) = 95.3815``, the isolated liquidation price; 0.3815 is left, less than the 1.25 %
    fee (1.19), so "binance" closes at the bankruptcy price 95 with no fee and the wallet ends at 0.
    """
    held = {s: p for s, p in positions.items() if p.size}
    if not cross_breached(wallet, held, lows, highs, tables):
        return None
    adverse = worst_prices(held, lows, highs)
    starts = {s: min(max(opens[s], lows[s]), highs[s]) for s in held}
    bankrupt = _bankruptcy_point(wallet, held, starts, adverse)
    if margin_balance(wallet, held, starts) < 0.0 and bankrupt is not None:  # opened past bankruptcy: no fee
        return Liquidation(bankrupt, {s: 0.0 for s in held}, True)
    prices = _path(held, starts, adverse, _breach_point(wallet, held, tables, starts, adverse))
    if ticks:
        prices = {s: to_tick(prices[s], ticks.get(s, 0.0), up=p.size < 0) for s, p in held.items()}
    left = max(margin_balance(wallet, held, prices), 0.0)
    if model == "binance":
        fees = {s: fee_rates[s] * abs(p.size) * prices[s] for s, p in held.items()}
        if left >= sum(fees.values()):
            return Liquidation(prices, fees, False)
        if bankrupt is None:  # no price move reaches 0 (a degenerate bar): what is left goes, as the fee
            return Liquidation(prices, _scaled(fees, left), True)
        return Liquidation(bankrupt, {s: 0.0 for s in held}, True)
    fees = {s: liquidation_fee(p.size, prices[s], fee_rates[s], tables[s]) for s, p in held.items()}
    return Liquidation(prices, _scaled(fees, left), False)


def _bankruptcy_point(wallet, held, starts, adverse) -> dict | None:
    """Prices where the margin balance is 0: on the bar's path (possibly beyond its extremes, as an isolated
    bankruptcy price may lie beyond the bar's low), or, when the bar opened past it or does not move, on the way
    from the entries to the open; None when no loss reaches it."""
    base = margin_balance(wallet, held, starts)
    slope = sum(p.size * (adverse[s] - starts[s]) for s, p in held.items())
    if slope < 0.0 and base >= 0.0:
        return _path(held, starts, adverse, -base / slope)
    loss = sum(p.size * (starts[s] - p.entry) for s, p in held.items())
    if loss >= 0.0:
        return None
    u = max(-wallet / loss, 0.0)
    return {s: p.entry + u * (starts[s] - p.entry) for s, p in held.items()}


def _scaled(fees: dict, left: float) -> dict:
    """``fees`` scaled down in proportion so that they add up to at most ``left``."""
    total = sum(fees.values())
    return {s: f * (left / total) for s, f in fees.items()} if total > left else fees
