"""The Backtrader broker for a portfolio of perpetuals: several data feeds, one account, isolated or cross margin.

:class:`PortfolioBroker` is :class:`backtests.broker.FuturesBroker` (fees, slippage, minimums, tier leverage
limits, funding, the Binance liquidation protocol) with:

- one :class:`PortfolioCommInfo` per data feed, so each symbol keeps its own funding log and the funding its
  isolated position paid out of its margin; each symbol's :class:`~backtests.margin.TradingRules` (tiers,
  minimums, liquidation fee) from the ``rules`` mapping, by symbol;
- ``margin="isolated"``: every position liquidated on its own, exactly as the single-symbol broker does (a
  one-symbol isolated portfolio gives the single-symbol result bit for bit);
- ``margin="cross"``: one liquidation check per bar over the whole account: margin balance (wallet + unrealised
  PnL of every position, each at its adverse mark extreme) against the sum of every position's maintenance margin
  from its own tier table; a breach closes every position (:func:`backtests.portfolio.account.cross_liquidation`);
- the available balance for a new order (:func:`backtests.portfolio.account.available_balance`): wallet +
  unrealised PnL at the last valuation - initial margins, where in isolated mode only the traded symbol's own
  unrealised PnL counts; an order whose opening part it cannot pay is refused, never resized;
- a feed without a bar at this step (it starts later, or has a gap) is left alone: no funding is paid twice, no
  order fills, its last mark close values it and the cross check holds it still.

Logs the engine reads (all times are Backtrader date numbers):

- ``fill_log``: FuturesBroker's entries plus ``"symbol"``; liquidations have ``kind == "liquidation"``;
- ``getcommissioninfo(data).funding_log``: (time, paid) per settlement of that symbol;
- ``margin_log``: one dict per bar close: ``time``, ``margin_balance`` (wallet + unrealised PnL at the mark close),
  ``maintenance`` ({symbol: USDT at the mark close, 0.0 when flat}), ``equity`` (broker value), ``wallet`` and
  ``ratio`` (the margin ratio as :class:`backtests.result.PortfolioBook` defines it), ``position`` ({symbol:
  contracts}), ``notional`` ({symbol: signed USDT at the mark close}) and ``pnl`` ({symbol: this bar's change of
  the account's equity caused by the symbol: price, fees, slippage, funding, liquidation; they add up to the change
  of ``equity``});
- :meth:`PortfolioBroker.attribution_by_symbol`: {symbol: Attribution}, adding up to the account's change.
"""

from __future__ import annotations

from typing import Mapping

import backtrader as bt

from backtests.attribution import Attribution, attribute_pnl
from backtests.broker import FuturesBroker, FuturesCommInfo
from backtests.config import BrokerConfig
from backtests.margin import TradingRules, liquidation_fee_rate, minimum_cost
from backtests.portfolio.account import Position, check_mode, cross_liquidation, maintenance, margin_balance, \
    margin_ratio


class PortfolioCommInfo(FuturesCommInfo):
    """One symbol's fees, margin and funding; funding at a bar's open is paid once per bar of *this* feed (a
    step of the portfolio clock where the feed has no new bar pays nothing)."""

    def __init__(self):
        super().__init__()
        self.last_bar = -1

    def get_credit_interest(self, data, pos, dt):
        bar = len(data)
        if bar == self.last_bar:
            return 0.0
        self.last_bar = bar
        return super().get_credit_interest(data, pos, dt)


def data_symbol(data) -> str:
    """The symbol a feed trades: its market's (``FuturesData(market=...)``), else its Backtrader name."""
    market = getattr(data.p, "market", None)
    return getattr(market, "symbol", None) or data._name


class PortfolioBroker(FuturesBroker):
    """FuturesBroker over several feeds in one account (see the module docstring). ``symbol_rules``: symbol ->
    :class:`~backtests.margin.TradingRules` (a symbol missing there uses its market's rules);
    ``margin``: "isolated" or "cross". Fees are the config's, for every symbol."""

    params = (
        ("margin", "isolated"),
        ("symbol_rules", None),  # {symbol: TradingRules}; FuturesBroker's own ``rules`` stays None
    )

    def init(self):
        super().init()
        self.margin_log: list[dict] = []
        self._comminfos: dict = {}
        self._last_len: dict = {}  # data -> its length at the previous step (has it a new bar now?)
        self._fresh: dict = {}  # data -> whether it has a new bar at this step
        self._flow: dict = {}  # symbol -> realised PnL - fees - funding so far (its share of the wallet's change)
        self._funding_seen: dict = {}  # data -> funding-log entries already in _flow
        self._contribution: dict = {}  # symbol -> _flow + unrealised PnL at the last logged close

    def start(self):
        super().start()
        check_mode(self.p.margin)

    # ------------------------------------------------------------------ per-symbol set-up

    def _datas(self) -> list:
        """Every feed of the run (the ones the broker has seen, outside a Cerebro)."""
        cerebro = getattr(self, "cerebro", None)
        return list(cerebro.datas) if cerebro is not None else list(self.positions)

    def getcommissioninfo(self, data):
        """This feed's own :class:`PortfolioCommInfo`, made on first use from the broker's default one."""
        comminfo = self._comminfos.get(data)
        if comminfo is None:
            base = self.comminfo[None]
            comminfo = self._comminfos[data] = PortfolioCommInfo(
                commission=base.p.commission, automargin=base.p.automargin, funding=base.p.funding)
        return comminfo

    def _about(self, data) -> tuple:
        """FuturesBroker's per-feed lookups, with this feed's own comminfo and its symbol's rules from ``rules``
        (a symbol missing there: its market's rules, looked up as the single-symbol broker does)."""
        cached = self._per_data.get(data)
        if cached is None:
            saved = self.p.rules
            self.p.rules = (self.p.symbol_rules or {}).get(data_symbol(data), saved)
            try:
                cached = super()._about(data)
            finally:
                self.p.rules = saved
        return cached

    def _execute(self, order, ago=None, price=None, cash=None, position=None, dtcoc=None):
        done = len(self.fill_log)
        # isolated: the other positions' unrealised PnL (held in Backtrader's cash up to their last valuation) is
        # not available to this order (account.available_balance); set aside while it executes
        aside = 0.0
        if self.p.margin == "isolated" and ago is not None:
            aside = sum(p.size * (p.adjbase - p.price) for d, p in self.positions.items()
                        if p.size and d is not order.data)
        self.cash -= aside
        try:
            out = super()._execute(order, ago, price, cash, position, dtcoc)
        finally:
            self.cash += aside
        if len(self.fill_log) > done:
            symbol = data_symbol(order.data)
            for entry in self.fill_log[done:]:
                entry["symbol"] = symbol
                self._flow[symbol] = self._flow.get(symbol, 0.0) + entry["pnl"] - entry["fee"]
        return out

    # ------------------------------------------------------------------ the bar

    def next(self):
        datas = self._datas()
        fresh = {d: len(d) != self._last_len.get(d, 0) for d in datas}
        self._last_len = {d: len(d) for d in datas}
        self._fresh = fresh
        if self.p.margin == "isolated":
            super().next()  # FuturesBroker's: funding, fills, funding inside, per-position liquidation
        else:
            if self._stock_next_needed():
                bt.brokers.BackBroker.next(self)
            else:
                self._next_fast()
            changed = self._settle_inside_bar() if self.p.config.funding else False
            if self.p.config.liquidation:
                changed |= self._liquidate_cross()
            if changed:
                self._get_value()
            self._check_wiped_out()
        self._log_margin()

    def _bar_is_new(self, data) -> bool:
        """Whether ``data`` has a new bar at this step (FuturesBroker's inside-bar funding settles only those)."""
        return self._fresh.get(data, True)

    def _liquidate_if_due(self, data, pos) -> bool:
        """Isolated: FuturesBroker's check, for the feeds with a new bar at this step only."""
        if not self._bar_is_new(data):
            return False
        return super()._liquidate_if_due(data, pos)

    def _check_wiped_out(self) -> None:
        """FuturesBroker's check (flat, with less cash than some market's minimum order costs at its close) over the
        feeds that have started: a feed before its first bar has no close yet."""
        if self.wiped_out_at is not None:
            return
        datas = [d for d in self._datas() if len(d)]
        if any(self.positions[d].size for d in datas):
            return
        cfg = self.p.config
        for data in datas:
            if self.cash < minimum_cost(self._about(data)[1], data.close[0], cfg.leverage, self._taker):
                self.wiped_out_at = data.datetime[0]
                return

    # ------------------------------------------------------------------ the account

    def wallet(self) -> float:
        """Wallet balance: starting cash + realised PnL - fees - funding (Backtrader's cash holds the unrealised
        PnL up to each position's last valuation, less the initial margins)."""
        wallet = self.cash
        for data, pos in self.positions.items():
            if pos.size:
                comminfo = self._about(data)[0]
                wallet += comminfo.getvalue(pos, None) - pos.size * (pos.adjbase - pos.price)
        return wallet

    def account_positions(self) -> dict[str, Position]:
        """symbol -> :class:`~backtests.portfolio.account.Position` of every feed (flat ones too)."""
        out = {}
        for d in self._datas():
            p = self.positions[d]
            out[data_symbol(d)] = Position(p.size, p.price, p.adjbase or 0.0,
                                           self.getcommissioninfo(d).held_funding) if p.size else Position()
        return out

    def _liquidate_cross(self) -> bool:
        """Close every position if the account breaches its total maintenance in this bar (see
        :func:`~backtests.portfolio.account.cross_liquidation`). A feed without a new bar holds at its mark close."""
        held = {d: p for d, p in self.positions.items() if p.size}
        if not held:
            return False
        fresh = self._fresh
        names = {d: data_symbol(d) for d in held}
        opens, lows, highs, tables, rates, ticks = {}, {}, {}, {}, {}, {}
        cfg = self.p.config
        for d in held:
            s = names[d]
            _, rules, low, high = self._about(d)
            if fresh.get(d, True):
                opens[s], lows[s], highs[s] = d.open[0], low[0], high[0]
            else:
                opens[s] = lows[s] = highs[s] = d.mark_close[0] if hasattr(d.lines, "mark_close") else d.close[0]
            tables[s], ticks[s] = rules.margin_table, rules.price_tick
            rates[s] = liquidation_fee_rate(cfg.liquidation_fee, rules)
        positions = {names[d]: Position(p.size, p.price, p.adjbase) for d, p in held.items()}
        out = cross_liquidation(self.wallet(), positions, opens, lows, highs, tables, rates, cfg.liquidation_model,
                                ticks)
        if out is None:
            return False
        for d, p in held.items():
            self._force_close(d, p, out.prices[names[d]], out.fees[names[d]])
        return True

    def _force_close(self, data, pos, price: float, fee: float) -> None:
        """Close ``pos`` at ``price`` paying ``fee``: a fill of kind "liquidation", notified to the strategy."""
        comminfo = self._about(data)[0]
        size = pos.size
        cls = bt.order.SellOrder if size > 0 else bt.order.BuyOrder
        order = cls(owner=None, data=data, size=abs(size), price=price, exectype=bt.Order.Market)
        order.addinfo(kind="liquidation")
        self._ocoize(order, None)
        order.submit(self)
        order.accept(self)
        comminfo.rate = fee / (abs(size) * price) if price else 0.0
        self._fill = ("liquidation", "liquidation", price)
        try:
            self._execute(order, ago=0, price=price)
        finally:
            comminfo.rate = self._taker  # the rate fills rest at
            self._fill = ("market", "taker", None)

    def _log_margin(self) -> None:
        datas = [d for d in self._datas() if len(d)]
        if not datas:
            return
        marks = {data_symbol(d): (d.mark_close[0] if hasattr(d.lines, "mark_close") else d.close[0]) for d in datas}
        tables = {data_symbol(d): self._about(d)[1].margin_table for d in datas}
        positions = {s: p for s, p in self.account_positions().items() if s in marks}
        wallet = self.wallet()
        pnl = {}
        for d in datas:
            s, log = data_symbol(d), self.getcommissioninfo(d).funding_log
            seen = self._funding_seen.get(d, 0)
            self._flow[s] = self._flow.get(s, 0.0) - sum(paid for _, paid in log[seen:])
            self._funding_seen[d] = len(log)
            now = self._flow[s] + (positions[s].size * (d.close[0] - positions[s].entry) if positions[s].size else 0.0)
            pnl[s] = now - self._contribution.get(s, 0.0)
            self._contribution[s] = now
        self.margin_log.append({
            "time": max(d.datetime[0] for d in datas),
            "margin_balance": margin_balance(wallet, positions, marks),
            "maintenance": maintenance(positions, marks, tables),
            "equity": self.getvalue(),
            "wallet": wallet,
            "ratio": margin_ratio(self.p.margin, wallet, positions, marks, tables, self.p.config.leverage),
            "position": {s: p.size for s, p in positions.items()},
            "notional": {s: p.size * marks[s] for s, p in positions.items()},
            "pnl": pnl,
        })

    def attribution_by_symbol(self) -> dict[str, Attribution]:
        """Each symbol's :class:`~backtests.attribution.Attribution` (price, fees, slippage, funding, liquidation)
        from its fills, its funding log and its position at its last close; they add up to the account's change
        (final value - starting cash)."""
        out = {}
        for d in self._datas():
            symbol = data_symbol(d)
            fills = [f for f in self.fill_log if f.get("symbol") == symbol]
            funding = sum(paid for _, paid in self.getcommissioninfo(d).funding_log)
            out[symbol] = attribute_pnl(fills, funding, self.positions[d].size, d.close[0] if len(d) else 0.0)
        return out


def make_portfolio_broker(config: BrokerConfig, rules: Mapping[str, TradingRules], margin: str) -> PortfolioBroker:
    """A :class:`PortfolioBroker` set up like :func:`backtests.broker.make_broker` (cash, fees, margin per
    contract ``1 / leverage``, funding, liquidation) for several feeds in one account.

    ``rules``: symbol (as the feeds' ``market.symbol``, "BTC/USDT:USDT") -> :class:`~backtests.margin.TradingRules`;
    ``margin``: "isolated" (each position on its own margin) or "cross" (one account, one liquidation).
    """
    check_mode(margin)
    broker = PortfolioBroker(config=config, symbol_rules=dict(rules), margin=margin,
                             int2pnl=False, shortcash=False, checksubmit=False)
    broker.setcash(config.cash)
    broker.addcommissioninfo(FuturesCommInfo(commission=broker._taker, automargin=1.0 / config.leverage,
                                             funding=config.funding))
    return broker
