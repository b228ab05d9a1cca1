"""The portfolio reference accountant: several perpetuals in one account, isolated or cross, without Backtrader.

An independent second opinion on :class:`backtests.portfolio.broker.PortfolioBroker` (tests require both to agree
on equity to 1e-9 of its peak on random target paths), written over plain floats with the shared pure rules of
:mod:`backtests.portfolio.account` and :mod:`backtests.margin`.

The account is a wallet plus one :class:`~backtests.portfolio.account.Position` per symbol. Bar by bar, in the
broker's order of events (symbols in the order given):

1. funding settled at the bar's open, per symbol at its own settlement (``size x previous mark close x rate``),
   out of the shared wallet (isolated: also out of that position's own margin);
2. each symbol's order for ``target[i - 1] - size`` fills at the open moved by the slippage model: the closed part
   realises its PnL, the opening part needs the account's available balance to pay its initial margin and taker fee
   (else it is refused, a flip then only closes; isolated: the other positions' unrealised PnL does not count);
   an order that opens below the market's minimums or above the
   tier's leverage is refused whole;
3. funding settled strictly inside the bar (``funding_inside``);
4. liquidation: isolated, each position against its own margin; cross, the account against the total maintenance
   of every position, all at their adverse mark extremes (:mod:`backtests.portfolio.account`);
5. mark to market at the close; once flat with less cash than some market's minimum order costs, every later
   order is refused ("account wiped out").

Worked number: 10,000 USDT, 5x, buy 1 BTC at 10,000 and 10 ETH at 1,000 (taker 0.05 %): fees 5 + 5, margins
2,000 + 2,000, available 5,990; closes 10,100 and 990: equity 10,000 - 10 + 100 - 100 = 9,990.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from backtests.attribution import Attribution
from backtests.config import BrokerConfig
from backtests.margin import TradingRules, below_minimum, check_contract_size, fee_rates, funding_kept, \
    liquidation_fee_rate, minimum_cost, to_tick
from backtests.portfolio.account import FLAT, Position, available_balance, can_open, check_mode, \
    cross_liquidation, initial_margin, isolated_liquidation, maintenance, margin_balance
from backtests.reference import average_entry, book_close, split_execution, within_leverage
from backtests.slippage import fill_price

_REASONS = {"margin": "not enough margin", "leverage": "leverage above the tier's limit"}
_COLUMNS = ("open", "high", "low", "close", "volume", "funding_rate", "mark_high", "mark_low", "mark_close")


@dataclass
class PortfolioReference:
    """What :func:`run_portfolio_reference` computes, per bar: account ``equity`` (at the close),
    ``margin_balance`` (at the mark close), and per symbol ``position``, ``maintenance`` (at the mark close) and
    ``funding`` (paid) arrays; ``fills`` and ``rejected`` as dicts keyed like the broker's (plus ``bar`` and
    ``symbol``); the final ``wallet`` and ``positions``; ``attribution``: symbol ->
    :class:`~backtests.attribution.Attribution` (adding up to final equity - starting cash); ``wiped_out_at`` (bar
    index) or None."""

    equity: np.ndarray
    margin_balance: np.ndarray
    position: dict
    maintenance: dict
    funding: dict
    fills: list
    rejected: list
    wallet: float
    positions: dict
    attribution: dict
    wiped_out_at: int | None = None


def fill_order(wallet: float, positions: dict, symbol: str, delta: float, price: float, fee_rate: float,
               leverage: float, rules: TradingRules, margin: str = "cross") -> tuple[float, dict, dict | None, str]:
    """Execute ``delta`` contracts of ``symbol`` at ``price``: (wallet, positions, fill or None, status).

    Status ``"filled"``; ``"margin"`` when the opening part was refused (the available balance of the whole
    account could not pay its initial margin and fee; a flip then only closes); ``"leverage"`` or the minimum's
    reason when refused whole. Long 2 at 100, sell 3 at 110 (fee rate 0.0005): +20 realised, 0.11 + 0.055 of
    fees, short 1 at 110.
    """
    pos = positions[symbol]
    refused = below_minimum(pos.size, delta, price, rules)
    if refused:
        return wallet, positions, None, refused
    opened, closed = split_execution(pos.size, delta)
    if opened and not within_leverage(pos.size, pos.entry, opened, closed, price, leverage, rules.margin_table):
        return wallet, positions, None, "leverage"
    size, entry, mark = pos.size, pos.entry, pos.mark
    pnl = fee = 0.0
    if closed:
        wallet, size, entry, pnl, fee = book_close(wallet, size, entry, closed, price, fee_rate)
    status = "filled"
    if opened:
        others = {**positions, symbol: Position(size, entry, mark, 0.0)}
        if not can_open(available_balance(wallet, others, leverage, margin, symbol), opened, price, leverage,
                        fee_rate):
            opened, status = 0.0, "margin"
        else:
            open_fee = abs(opened) * fee_rate * price
            wallet -= open_fee
            fee += open_fee
            entry = average_entry(size, entry, opened, price)
            size += opened
            mark = price
    executed = closed + opened
    if not executed:
        return wallet, positions, None, status
    new = Position(size, entry, mark, funding_kept(pos.held_funding, pos.size, size))
    fill = {"size": executed, "price": price, "fee": fee, "pnl": pnl, "liquidity": "taker"}
    return wallet, {**positions, symbol: new if size else FLAT}, fill, status


def run_portfolio_reference(arrays: Mapping[str, Mapping[str, np.ndarray]], targets: Mapping[str, np.ndarray],
                            config: BrokerConfig, rules: Mapping[str, TradingRules],
                            margin: str = "cross") -> PortfolioReference:
    """Account for ``targets`` (symbol -> signed contracts wanted after each bar's close) over aligned bars.

    ``arrays``: symbol -> the columns :func:`data_feeds.feed.feed_arrays` builds (open, high, low, close, volume,
    funding_rate, funding_inside, mark_high, mark_low, mark_close), every symbol on the same bars. ``rules``:
    symbol -> :class:`~backtests.margin.TradingRules` (tiers, minimums, liquidation fee). ``margin``: "isolated" or
    "cross". The order for ``targets[s][i] - size`` is sent at bar i's close and fills at bar i+1's open; a refused
    one is sent again at the next close.
    """
    check_mode(margin)
    symbols = list(arrays)
    col = {s: {k: np.asarray(arrays[s][k], dtype="float64").tolist() for k in _COLUMNS} for s in symbols}
    for s in symbols:
        col[s]["funding_inside"] = np.asarray(arrays[s].get("funding_inside", np.zeros(len(col[s]["close"]))),
                                              dtype="float64").tolist()
    want = {s: np.asarray(targets[s], dtype="float64").tolist() for s in symbols}
    n = len(col[symbols[0]]["close"]) if symbols else 0
    if any(len(col[s]["close"]) != n or len(want[s]) != n for s in symbols):
        bars, wanted = [len(col[s]["close"]) for s in symbols], [len(want[s]) for s in symbols]
        raise ValueError(f"the portfolio reference needs every symbol's bars and targets on one clock: bars {bars}, "
                         f"targets {wanted}")
    lev, cfg = config.leverage, config
    taker = fee_rates(config, None)[0]  # the config's, for every symbol (as the portfolio broker)
    for s in symbols:
        if rules[s].rules is not None:
            check_contract_size(rules[s].rules)
    tables = {s: rules[s].margin_table for s in symbols}
    liq_rates = {s: liquidation_fee_rate(cfg.liquidation_fee, rules[s]) for s in symbols}
    wallet = cfg.cash
    positions = {s: FLAT for s in symbols}
    equity, balance = np.empty(n), np.empty(n)
    held = {s: np.empty(n) for s in symbols}
    mm = {s: np.empty(n) for s in symbols}
    paid = {s: np.zeros(n) for s in symbols}
    fills: list[dict] = []
    rejected: list[dict] = []
    wiped: int | None = None
    for i in range(n):
        if i > 0:
            if cfg.funding:
                for s in symbols:
                    pos, rate = positions[s], col[s]["funding_rate"][i]
                    if pos.size and rate != 0.0:
                        amount = pos.size * col[s]["mark_close"][i - 1] * rate
                        wallet -= amount
                        positions[s] = pos._replace(held_funding=pos.held_funding + amount)
                        paid[s][i] += amount
            for s in symbols:
                c = col[s]
                delta = want[s][i - 1] - positions[s].size
                if delta == 0.0:
                    continue
                price = fill_price(cfg.slippage, delta, c["open"][i], c["high"][i], c["low"][i], c["volume"][i],
                                   bps=cfg.slippage_bps, coef=cfg.slippage_coef)
                if rules[s].price_tick:  # on the tick grid, against the order (as the broker does)
                    price = to_tick(price, rules[s].price_tick, up=delta > 0)
                if wiped is not None:
                    fill, status = None, "account wiped out"
                else:
                    wallet, positions, fill, status = fill_order(wallet, positions, s, delta, price, taker,
                                                                 lev, rules[s], margin)
                if fill is not None:
                    fills.append({"bar": i, "symbol": s, **fill, "notional": abs(fill["size"]) * price,
                                  "slippage": (price - c["open"][i]) * fill["size"], "kind": "market",
                                  "reference_price": c["open"][i]})
                if status != "filled":
                    rejected.append({"bar": i, "symbol": s, "size": delta, "price": c["close"][i - 1],
                                     "reason": _REASONS.get(status, status)})
        if cfg.funding:
            for s in symbols:
                pos, inside = positions[s], col[s]["funding_inside"][i]
                if pos.size and inside != 0.0:
                    amount = pos.size * inside
                    wallet -= amount
                    positions[s] = pos._replace(held_funding=pos.held_funding + amount)
                    paid[s][i] += amount
        if cfg.liquidation:
            wallet, positions = _liquidate(i, margin, wallet, positions, col, tables, liq_rates, cfg, fills, rules)
        positions = {s: p._replace(mark=col[s]["close"][i]) if p.size else p for s, p in positions.items()}
        closes = {s: col[s]["close"][i] for s in symbols}
        marks = {s: col[s]["mark_close"][i] for s in symbols}
        equity[i] = margin_balance(wallet, positions, closes)
        balance[i] = margin_balance(wallet, positions, marks)
        at_mark = maintenance(positions, marks, tables)
        for s in symbols:
            held[s][i], mm[s][i] = positions[s].size, at_mark[s]
        if (wiped is None and not any(p.size for p in positions.values())
                and any(wallet < minimum_cost(rules[s], closes[s], lev, taker) for s in symbols)):
            wiped = i
    return PortfolioReference(equity, balance, held, mm, paid, fills, rejected, wallet, positions,
                              _attribution(symbols, fills, paid, positions, col), wiped)


def _attribution(symbols, fills, paid, positions, col) -> dict:
    """symbol -> Attribution from the reference's own fills, funding and the position left at the last close."""
    out = {}
    for s in symbols:
        mine = [f for f in fills if f["symbol"] == s]
        ordinary = [f for f in mine if f["kind"] != "liquidation"]
        forced = [f for f in mine if f["kind"] == "liquidation"]
        slip = sum(f["slippage"] for f in ordinary)
        last = col[s]["close"][-1] if col[s]["close"] else 0.0
        unrealised = positions[s].size * (last - positions[s].entry) if positions[s].size else 0.0
        out[s] = Attribution(price=sum(f["pnl"] for f in ordinary) + unrealised + slip,
                             fees_taker=-sum(f["fee"] for f in ordinary), slippage=-slip,
                             funding=-float(np.sum(paid[s])),
                             liquidation=sum(f["pnl"] - f["fee"] for f in forced))
    return out


def _liquidate(i, margin, wallet, positions, col, tables, liq_rates, cfg, fills, rules_of):
    """Step 4 of a bar: liquidations (isolated per position, cross for the whole account), booked as fills."""
    lev = cfg.leverage
    if margin == "isolated":
        for s, pos in positions.items():
            c = col[s]
            rules = rules_of[s]
            for step in isolated_liquidation(pos, lev, c["mark_low"][i], c["mark_high"][i], c["open"][i], tables[s],
                                             liq_rates[s], cfg.liquidation_model, rules.price_tick, rules.qty_step):
                wallet = _book_liquidation(i, s, pos._replace(size=-step.size), step.price, step.fee, wallet, fills)
                rest = pos.size + step.size
                if rest and step.partial:  # the rest keeps the margin left: what its initial margin is not, it paid
                    pos = pos._replace(size=rest, held_funding=initial_margin(pos._replace(size=rest), lev)
                                       - step.margin)
                else:
                    pos = FLAT
            positions = {**positions, s: pos}
        return wallet, positions
    pick = {k: {s: col[s][k][i] for s in positions} for k in ("open", "mark_low", "mark_high")}
    out = cross_liquidation(wallet, positions, pick["open"], pick["mark_low"], pick["mark_high"], tables, liq_rates,
                            cfg.liquidation_model, {s: rules_of[s].price_tick for s in positions})
    if out is None:
        return wallet, positions
    for s in out.prices:
        wallet = _book_liquidation(i, s, positions[s], out.prices[s], out.fees[s], wallet, fills)
    return wallet, {s: FLAT if s in out.prices else p for s, p in positions.items()}


def _book_liquidation(i, symbol, pos, price, fee, wallet, fills) -> float:
    pnl = pos.size * (price - pos.entry)
    fills.append({"bar": i, "symbol": symbol, "size": -pos.size, "price": price, "fee": fee, "pnl": pnl,
                  "liquidity": "liquidation", "notional": abs(pos.size) * price, "slippage": 0.0,
                  "kind": "liquidation", "reference_price": price})
    return wallet + pnl - fee
