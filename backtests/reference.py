"""The reference accountant: the broker's rules as small pure functions over plain floats and numpy arrays.

An independent second opinion on :class:`~backtests.broker.FuturesBroker` (property tests require both to agree
on every fill and on equity to 1e-9) and a fast path for parameter sweeps: no Backtrader, no pandas.

The account is an :class:`Account` (a NamedTuple); each kernel takes one and returns a new one:

- :func:`apply_funding` at a settlement: ``paid = size x mark price x rate``;
- :func:`apply_fill` for one execution: realises the closed part, then opens the rest if the free cash pays its
  initial margin (``|size| x price / leverage``) and fee; otherwise the opening part is refused (status
  ``"margin"``), never resized;
- :func:`check_liquidation` over a bar's mark range (see :mod:`backtests.margin`);
- :func:`mark_to_market` at the close.

:func:`run_reference` strings them together bar by bar in the broker's order (funding at the open, fills at the
open, funding settled inside the bar, liquidation over the bar, mark to market at the close) for a series of
target positions in contracts.

Worked number: 10,000 USDT, leverage 5, buy 4 at 10,000 with taker 0.05 %: fee 20, initial margin 8,000, free cash
1,980; a close at 10,100 makes equity 10,000 - 20 + 400 = 10,380.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import numpy as np

from backtests.attribution import Attribution
from backtests.config import BrokerConfig
from backtests.margin import DEFAULT_TABLE, MarginTable, TradingRules, below_minimum, check_contract_size, fee_rates, \
    funding_kept, is_liquidated, leverage_allowed, liquidation_fee_rate, liquidation_steps, minimum_cost, to_tick
from backtests.slippage import fill_price


class Account(NamedTuple):
    """An isolated-margin account holding one position, plus running attribution totals (all USDT).

    ``wallet`` = starting cash + realised PnL - fees - funding; equity at price p = wallet + size x (p - entry).
    ``mark`` is the price the position was last valued at (the previous close, or the last fill that opened);
    free cash = equity at ``mark`` - the position's margin.
    """

    wallet: float
    size: float = 0.0
    entry: float = 0.0
    mark: float = 0.0
    realised: float = 0.0      # realised price PnL of ordinary fills, at fill prices
    fees_taker: float = 0.0
    fees_maker: float = 0.0
    slippage: float = 0.0      # lost against reference prices (positive = cost)
    funding: float = 0.0       # paid (negative = received)
    liq_realised: float = 0.0  # realised price PnL of liquidations
    liq_fees: float = 0.0
    held_funding: float = 0.0  # funding the open position paid out of its isolated margin (received: negative)


class Fill(NamedTuple):
    """One execution: signed size, price, fee and slippage (USDT), realised PnL and liquidity."""

    size: float
    price: float
    fee: float
    slippage: float
    pnl: float
    liquidity: str


def equity(acct: Account, price: float) -> float:
    """Account value at ``price``: wallet + unrealised PnL."""
    return acct.wallet + acct.size * (price - acct.entry)


def position_margin(acct: Account, leverage: float) -> float:
    """Initial margin held by the position: ``|size| x entry / leverage`` (1 BTC at 60,000, 5x: 12,000)."""
    return abs(acct.size) * (acct.entry * (1.0 / leverage))


def free_cash(acct: Account, leverage: float) -> float:
    """What a new position can use: equity at the last mark minus the margin already held."""
    return acct.wallet + acct.size * (acct.mark - acct.entry) - position_margin(acct, leverage)


def apply_funding(acct: Account, rate: float, mark_price: float) -> tuple[Account, float]:
    """Settle funding: long 2 at a mark of 100 with rate 0.0001 pays 0.02; a short receives it (paid < 0)."""
    if acct.size == 0.0 or rate == 0.0:
        return acct, 0.0
    paid = acct.size * mark_price * rate
    return acct._replace(wallet=acct.wallet - paid, funding=acct.funding + paid,
                         held_funding=acct.held_funding + paid), paid


def split_execution(size: float, delta: float) -> tuple[float, float]:
    """(opened, closed) parts of an execution of ``delta`` on a position of ``size``, both signed like delta."""
    new = size + delta
    if new == 0.0:
        return 0.0, delta
    if size == 0.0 or (delta > 0) == (size > 0):
        return delta, 0.0
    if (new > 0) == (size > 0):
        return 0.0, delta
    return new, -size


def within_leverage(size: float, entry: float, opened: float, closed: float, price: float, leverage: float,
                    table: MarginTable) -> bool:
    """Whether a position of ``size`` at ``entry`` stays within its tier's leverage limit after an execution at
    ``price`` that closes ``closed`` and opens ``opened`` contracts (:func:`split_execution`)."""
    held = size + closed
    after = held + opened
    entry_after = price if held == 0.0 else (entry * held + opened * price) / after
    return leverage_allowed(abs(after) * entry_after, leverage, table)


def book_close(wallet: float, size: float, entry: float, closed: float, price: float,
               fee_rate: float) -> tuple[float, float, float, float, float]:
    """(wallet, size, entry, pnl, fee) after closing ``closed`` contracts (signed against the position) at
    ``price``: the realised PnL less the fee on the closed notional goes to the wallet; entry is 0 once flat."""
    pnl = -closed * (price - entry)
    fee = abs(closed) * fee_rate * price
    size += closed
    return wallet + (pnl - fee), size, (0.0 if size == 0.0 else entry), pnl, fee


def average_entry(size: float, entry: float, opened: float, price: float) -> float:
    """Entry price of a position of ``size`` at ``entry`` after ``opened`` more contracts at ``price``."""
    return price if size == 0.0 else (entry * size + opened * price) / (size + opened)


def apply_fill(acct: Account, size: float, price: float, reference: float, fee_rate: float, leverage: float,
               liquidity: str = "taker", table: MarginTable = DEFAULT_TABLE,
               rules: TradingRules | None = None) -> tuple[Account, Fill | None, str]:
    """Execute ``size`` (signed) at ``price``; ``reference`` is the price before slippage.

    Returns the new account, the fill (None when nothing executed) and a status: ``"filled"``; ``"margin"``
    when the opening part was refused for want of free cash (a flip then only closes); ``"leverage"`` when the
    resulting position would exceed its tier's leverage limit (nothing executes); the reason itself when the
    order opens below the market's minimum quantity or order value (``rules``; nothing executes).
    Long 2 at 100, sell 3 at 110 with fee rate 0.0005: realises +20, pays 0.11 + 0.055, ends short 1 at 110.
    """
    if rules is not None:
        table = rules.margin_table
        refused = below_minimum(acct.size, size, price, rules)
        if refused:
            return acct, None, refused
    opened, closed = split_execution(acct.size, size)
    if opened and not within_leverage(acct.size, acct.entry, opened, closed, price, leverage, table):
        return acct, None, "leverage"
    wallet, pos, entry, mark = acct.wallet, acct.size, acct.entry, acct.mark
    pnl = fee = 0.0
    if closed:
        wallet, pos, entry, pnl, fee = book_close(wallet, pos, entry, closed, price, fee_rate)
    status = "filled"
    if opened:
        held = acct._replace(wallet=wallet, size=pos, entry=entry)
        need_margin = abs(opened) * (price * (1.0 / leverage))
        need_fee = abs(opened) * fee_rate * price
        if free_cash(held, leverage) - need_margin - need_fee < 0.0:
            opened, status = 0.0, "margin"
        else:
            wallet -= need_fee
            fee += need_fee
            entry = average_entry(pos, entry, opened, price)
            pos += opened
            mark = price
    executed = closed + opened
    if not executed:
        return acct, None, status
    slip = (price - reference) * executed
    fees = {"fees_taker": acct.fees_taker, "fees_maker": acct.fees_maker}
    fees["fees_maker" if liquidity == "maker" else "fees_taker"] += fee
    new = acct._replace(wallet=wallet, size=pos, entry=entry, mark=mark, realised=acct.realised + pnl,
                        slippage=acct.slippage + slip, held_funding=funding_kept(acct.held_funding, acct.size, pos),
                        **fees)
    return new, Fill(executed, price, fee, slip, pnl, liquidity), status


def liquidate(acct: Account, mark_low: float, mark_high: float, leverage: float,
              table: MarginTable = DEFAULT_TABLE, fee_rate: float = 0.0125, open_price: float | None = None,
              model: str = "flat", tick: float = 0.0, qty_step: float = 0.0) -> tuple[Account, list[Fill]]:
    """Liquidate the position if its isolated margin balance at the bar's adverse mark extreme is below
    maintenance. The isolated margin is the initial margin less what the position has paid from it (funding, and
    the losses and fees of earlier partial liquidations: ``held_funding``).

    The executions are :func:`~backtests.margin.liquidation_steps`'s (``model`` "binance": a large position is
    first reduced one leverage tier by a partial close; "flat": one full close) for a bar opening at
    ``open_price`` (None: no gap, the liquidation price). A partial close leaves the rest open with the margin
    left. Long 1 at 100, 20x (margin 5), mark low 95 on the BTC table, "flat": closed at 95.3815 for -4.6185 and
    a fee of 0.3815; "binance": at the bankruptcy price 95 for -5 and no fee (0.3815 left < the 1.25 % fee).
    Either way the margin of 5 is lost.
    """
    size = acct.size
    if size == 0.0:
        return acct, []
    margin = position_margin(acct, leverage) - acct.held_funding
    adverse = mark_low if size > 0 else mark_high
    if not is_liquidated(size, acct.entry, margin, adverse, table):
        return acct, []
    steps = liquidation_steps(size, acct.entry, margin, acct.entry if open_price is None else open_price, adverse,
                              table, fee_rate, model, tick, qty_step)
    fills = []
    for step in steps:
        pnl = -step.size * (step.price - acct.entry)
        rest = acct.size + step.size
        acct = acct._replace(wallet=acct.wallet + pnl - step.fee, size=rest, entry=acct.entry if rest else 0.0,
                             mark=step.price, liq_realised=acct.liq_realised + pnl, liq_fees=acct.liq_fees + step.fee,
                             held_funding=0.0)
        if step.partial:
            acct = acct._replace(held_funding=position_margin(acct, leverage) - step.margin)
        fills.append(Fill(step.size, step.price, step.fee, 0.0, pnl, "liquidation"))
    return acct, fills


def check_liquidation(acct: Account, mark_low: float, mark_high: float, leverage: float,
                      table: MarginTable = DEFAULT_TABLE, fee_rate: float = 0.0125,
                      open_price: float | None = None, model: str = "flat") -> tuple[Account, Fill | None]:
    """:func:`liquidate` returning the last execution only (None: no liquidation); one execution unless a
    "binance" liquidation of a large position went in steps."""
    acct, fills = liquidate(acct, mark_low, mark_high, leverage, table, fee_rate, open_price, model)
    return acct, (fills[-1] if fills else None)


def mark_to_market(acct: Account, close: float) -> Account:
    """Value the position at the bar's close from now on (equity is :func:`equity` at ``close``)."""
    return acct._replace(mark=close)


def attribution(acct: Account, last_close: float) -> Attribution:
    """The run's attribution from the account's running totals (see :mod:`backtests.attribution`)."""
    unrealised = acct.size * (last_close - acct.entry)
    return Attribution(price=acct.realised + unrealised + acct.slippage, fees_taker=-acct.fees_taker,
                       fees_maker=-acct.fees_maker, slippage=-acct.slippage, funding=-acct.funding,
                       liquidation=acct.liq_realised - acct.liq_fees)


@dataclass
class ReferenceResult:
    """What :func:`run_reference` computes: per-bar ``equity``, ``position`` and ``funding`` (paid) arrays,
    ``fills`` and ``rejected`` as lists of dicts keyed like the engine's fills (``bar`` is the bar index), the
    final :class:`Account` and the :class:`Attribution`."""

    equity: np.ndarray
    position: np.ndarray
    funding: np.ndarray
    fills: list[dict]
    rejected: list[dict]
    account: Account
    attribution: Attribution
    wiped_out_at: int | None = None


def run_reference(arrays: Mapping[str, np.ndarray], targets: np.ndarray, config: BrokerConfig,
                  table: MarginTable = DEFAULT_TABLE, *, rules: TradingRules | None = None) -> ReferenceResult:
    """Account for ``targets`` (signed contracts wanted after each bar's close) over the bars in ``arrays``.

    ``arrays`` holds open, high, low, close, volume, funding_rate, mark_high, mark_low, mark_close and
    funding_inside per bar (as :func:`data_feeds.feed.feed_arrays` builds them): the rate settled at the bar's
    open is paid before its fills at the previous mark close; ``funding_inside`` (sum of rate x mark price of
    the settlements strictly inside the bar) after them, before the liquidation check. The order for
    ``targets[i] - position`` is sent at bar i's close and fills at bar i+1's open as a market order; a refused
    one is sent again at the next close.
    ``rules`` (a market's :class:`~backtests.margin.TradingRules`) replaces ``table`` and adds the minimum order
    checks and the wiped-out stop: once flat with less cash than the minimum order costs at a close, every later
    order is refused ("account wiped out"; ``ReferenceResult.wiped_out_at`` is that bar's index).
    """
    o, h, lo, c, vol = (np.asarray(arrays[k], dtype="float64").tolist()
                        for k in ("open", "high", "low", "close", "volume"))
    rate, m_high, m_low, m_close = (np.asarray(arrays[k], dtype="float64").tolist()
                                    for k in ("funding_rate", "mark_high", "mark_low", "mark_close"))
    inside = np.asarray(arrays.get("funding_inside", np.zeros(len(rate))), dtype="float64").tolist()
    want = np.asarray(targets, dtype="float64").tolist()
    n, lev = len(c), config.leverage
    tick = qty_step = 0.0
    if rules is not None:
        table, tick, qty_step = rules.margin_table, rules.price_tick, rules.qty_step
        if rules.rules is not None:
            check_contract_size(rules.rules)
    taker, _, _ = fee_rates(config, rules)
    wiped: int | None = None
    liq_rate = liquidation_fee_rate(config.liquidation_fee, rules)
    acct = Account(wallet=config.cash)
    eq, pos, paid_per_bar = np.empty(n), np.empty(n), np.zeros(n)
    fills: list[dict] = []
    rejected: list[dict] = []
    for i in range(n):
        if i > 0:
            if config.funding:
                acct, paid_per_bar[i] = apply_funding(acct, rate[i], m_close[i - 1])
            delta = want[i - 1] - acct.size
            if delta != 0.0:
                price = fill_price(config.slippage, delta, o[i], h[i], lo[i], vol[i], bps=config.slippage_bps,
                                   coef=config.slippage_coef)
                if tick:      # on the tick grid, against the order (as the broker does)
                    price = to_tick(price, tick, up=delta > 0)
                if wiped is not None:
                    fill, status = None, "account wiped out"
                else:
                    acct, fill, status = apply_fill(acct, delta, price, o[i], taker, lev, "taker", table, rules)
                if fill is not None:
                    fills.append(_fill_row(i, fill, "market", o[i]))
                if status != "filled":
                    rejected.append({"bar": i, "size": delta, "price": c[i - 1],
                                     "reason": _REASONS.get(status, status)})
        if config.funding and inside[i] != 0.0 and acct.size != 0.0:
            acct, paid = apply_funding(acct, inside[i], 1.0)
            paid_per_bar[i] += paid
        if config.liquidation:
            acct, liquidations = liquidate(acct, m_low[i], m_high[i], lev, table, liq_rate, o[i],
                                           config.liquidation_model, tick, qty_step)
            for fill in liquidations:
                fills.append(_fill_row(i, fill, "liquidation", fill.price))
        acct = mark_to_market(acct, c[i])
        eq[i], pos[i] = equity(acct, c[i]), acct.size
        if (rules is not None and wiped is None and acct.size == 0.0
                and acct.wallet < minimum_cost(rules, c[i], lev, taker)):
            wiped = i
    last = c[-1] if n else 0.0
    return ReferenceResult(eq, pos, paid_per_bar, fills, rejected, acct, attribution(acct, last), wiped)


_REASONS = {"margin": "not enough margin", "leverage": "leverage above the tier's limit"}


def _fill_row(bar: int, fill: Fill, kind: str, reference: float) -> dict:
    return {"bar": bar, "size": fill.size, "price": fill.price, "notional": abs(fill.size) * fill.price,
            "fee": fill.fee, "slippage": fill.slippage, "kind": kind, "liquidity": fill.liquidity,
            "reference_price": reference, "pnl": fill.pnl}
