"""Futures accounting on Backtrader's own broker, through its documented seams plus a thin broker subclass.

USDT-margined linear perpetuals, isolated margin: one contract = one unit of the base asset (``size=0.5`` is
half a BTC), PnL = size x price change, fees = |size| x price x rate.

Backtrader's conventions, each pinned by a test in ``tests/test_broker_conventions.py``:

- Sizes are floats; nothing here calls ``int()`` on them (Backtrader's own sizers do).
- ``commtype=COMM_PERC`` with ``percabs=True``: ``taker_fee=0.0005`` means 0.05 % of notional, not 0.0005 %.
- The broker divides reserved margin by the comminfo's ``leverage`` and *also* adds unrealised PnL to
  the value again when that leverage is not 1. So our comminfo keeps ``leverage=1`` and expresses
  leverage through the margin per contract (``automargin = 1 / leverage``): ``leverage=5`` reserves
  notional / 5 as initial margin.
- With ``shortcash=False`` Backtrader values an open position by ``getvalue`` at the *current* price, which would add a
  phantom ``size x (close - entry) / leverage`` to the account value; :meth:`FuturesCommInfo.getvalue`
  prices it at the entry price, so value = cash + reserved margin = starting cash + realised and
  unrealised PnL - fees - funding, exactly.
- Funding goes through ``get_credit_interest``, which the broker calls at each new bar *before* it fills
  the orders due at that bar's open: the position held through a settlement pays
  ``size x mark price x rate`` (longs pay a positive rate, shorts receive it), priced at the mark
  close of the bar before the settlement (the mark price at the settlement instant).
- ``checksubmit=False``: Backtrader's check at submission prices the margin released by a closing
  order at the order's creation price instead of the entry price, so it refuses affordable flips. The
  margin check happens where an exchange makes it, at execution (next open), with the right prices. An order
  whose opening part cannot be paid (initial margin + fee > free cash) is refused with status ``Margin``; in a
  flip the closing part still executes first. An order that would leave a position above its tier's leverage
  limit (:func:`~backtests.margin.max_leverage`) is refused whole with status ``Rejected``. Neither is resized.

Order of events within a bar (:class:`FuturesBroker`):

1. funding settled exactly at the bar's open on the position held through it (before the open's fills), at the
   mark close of the bar before; as on Binance in isolated mode it comes out of the position's margin (the
   account value pays it either way), which moves the liquidation price;
2. orders due at the open fill: market orders at the open moved by the slippage model and put on the market's
   tick grid against the order, paying the taker fee (the market's stored fee unless the user set one);
   limit orders at their limit (or the better open), paying the maker fee if they rested (not marketable
   against the close they were placed at) and the taker fee otherwise;
2b. funding settled strictly inside the bar (bars longer than the funding interval: 08:00 and 16:00 inside a 1d
   bar) on the position held after the open's fills, at the mark price of each instant (the feed's
   ``funding_inside`` line), also out of the isolated margin; a bar's settlements are booked before its
   liquidation check (the bar's price path inside it is unknown);
3. liquidation check over the bar's adverse mark extreme (mark low for a long, mark high for a short; the
   last-price candle where no mark prices exist): below maintenance, the position is closed at the
   liquidation price with the liquidation fee, or at the open when the bar gapped past it, never losing more
   than its margin (:func:`~backtests.margin.liquidation_exit`); a large position is first cut one leverage tier
   down by a partial liquidation that leaves it margin-compliant where Binance's protocol allows it
   (:func:`~backtests.margin.liquidation_steps`); each execution is recorded as a fill of kind ``"liquidation"``
   and notified to the strategy; the run goes on with what is left;
4. mark to market at the close.
"""

from __future__ import annotations


import backtrader as bt

from backtests.margin import TradingRules, below_minimum, fee_rates, funding_kept, is_liquidated, \
    leverage_allowed, liquidation_fee_rate, liquidation_steps, market_rules, minimum_cost, to_tick
from backtests.config import BrokerConfig  # noqa: F401  (re-exported: it configures this broker)
from backtests.slippage import fill_price

_OrderData = bt.order.OrderData


class FuturesCommInfo(bt.CommInfoBase):
    """Linear-perpetual fees, margin and funding for one data feed (see the module docstring).

    ``rate`` is the fee rate of the execution in progress: the broker sets it to the maker, taker or
    liquidation rate around each fill; it rests at the taker rate (``commission``).
    """

    params = (
        ("stocklike", False),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
        ("leverage", 1.0),
        ("automargin", 1.0),
        ("mult", 1.0),
        ("funding", True),
    )

    def __init__(self):
        super().__init__()
        self.funding_log: list[tuple[float, float]] = []  # (bt date number, amount paid)
        self.held_funding = 0.0  # paid by the open position out of its isolated margin (the broker keeps it current)
        self.rate = self.p.commission

    def _getcommission(self, size, price, pseudoexec):
        """Fee in USDT: ``|size| x price x rate`` (0.5 BTC at 60,000 with rate 0.0005: 15 USDT)."""
        return abs(size) * self.rate * price

    def getvalue(self, position, price):
        """Reserved margin of ``position``, priced at its entry price (see the module docstring)."""
        return abs(position.size) * self.get_margin(position.price)

    def get_credit_interest(self, data, pos, dt):
        """Funding paid at this bar's open: size x mark price x rate; negative when received."""
        if not self.p.funding:
            return 0.0
        rate = data.funding_rate[0]
        if rate == 0.0 or len(data) < 2:
            return 0.0
        paid = pos.size * data.mark_close[-1] * rate
        self.funding_log.append((data.datetime[0], paid))
        self.held_funding += paid
        return paid


class FuturesBroker(bt.brokers.BackBroker):
    """Backtrader's broker plus slippage models, maker/taker fees and isolated-margin liquidation.

    ``fill_log`` holds one dict per execution: time (bt date number), size, price, notional, fee, slippage
    (USDT lost against the reference price: the open for market orders), kind ("market", "limit",
    "liquidation", ...), liquidity ("taker", "maker", "liquidation"), reference_price and pnl (realised).
    """

    params = (
        ("config", BrokerConfig()),
        ("rules", None),  # TradingRules; None: the traded market's (the feed's ``market.exchange/symbol``)
    )

    def init(self):
        super().init()
        self.wiped_out_at: float | None = None  # bt date of the bar whose close could no longer pay the minimum order
        self.fill_log: list[dict] = []
        self._fill = ("market", "taker", None)  # kind, liquidity, reference price of the execution in progress
        self._per_data: dict = {}  # data -> (comminfo, margin table, adverse-low line, adverse-high line)
        # fee rates: the market's stored fees unless the user set them (see :func:`backtests.margin.fee_rates`)
        self._taker, self._maker, self.fee_source = fee_rates(self.p.config, self.p.rules)
        self._bar_cache: dict = {}  # data -> per-bar lookups (:meth:`_bar_lines`)

    # ------------------------------------------------------------------ fills

    def _try_exec(self, order):
        comminfo = self.getcommissioninfo(order.data)
        if order.exectype == bt.Order.Limit:
            created = order.created
            tick = self._about(order.data)[1].price_tick
            if tick:   # a limit price on the tick grid, on its passive side: never worse than the strategy asked
                created.price = to_tick(created.price, tick, up=not order.isbuy())
            marketable = created.price >= created.pclose if order.isbuy() else created.price <= created.pclose
            liquidity, comminfo.rate = ("taker", self._taker) if marketable else ("maker", self._maker)
        else:
            liquidity, comminfo.rate = "taker", self._taker
        self._fill = (order.getordername().lower(), liquidity, None)
        try:
            super()._try_exec(order)
        finally:
            comminfo.rate = self._taker
            self._fill = ("market", "taker", None)

    def _try_exec_market(self, order, popen, phigh, plow):
        """Fill at this bar's open moved by the slippage model (never at the creation bar)."""
        data = order.data
        if data.datetime[0] <= order.created.dt:
            return
        cfg = self.p.config
        size = order.executed.remsize
        price = fill_price(cfg.slippage, size, popen, phigh, plow, data.volume[0],
                           bps=cfg.slippage_bps, coef=cfg.slippage_coef)
        tick = self._about(data)[1].price_tick
        if tick:   # on the tick grid, against the order: the deepest book level a slipped fill reaches
            price = to_tick(price, tick, up=size > 0)
        self._fill = (self._fill[0], self._fill[1], popen)
        self._execute(order, ago=0, price=price)

    def _execute(self, order, ago=None, price=None, cash=None, position=None, dtcoc=None):
        if ago is None or price is None:  # pseudo-execution (submission check) or no price: nothing to record
            return super()._execute(order, ago, price, cash, position, dtcoc)
        held = self.positions[order.data].size
        refused = ("account wiped out" if self.wiped_out_at is not None and order.info.get("kind") != "liquidation"
                   else below_minimum(held, order.executed.remsize, price, self._about(order.data)[1]))
        if not refused and self._breaks_leverage_limit(order, price):
            refused = "leverage above the tier's limit"
        if refused:
            order.addinfo(reason=refused)
            order.reject(self)
            self.notify(order)
            self._ococheck(order)
            self._bracketize(order, cancel=True)
            return None
        done = len(order.executed.exbits)
        held = self.positions[order.data]
        before = held.size
        out = super()._execute(order, ago, price, cash, position, dtcoc)
        comminfo = self.getcommissioninfo(order.data)
        comminfo.held_funding = funding_kept(comminfo.held_funding, before, held.size)
        kind, liquidity, reference = self._fill
        for bit in list(order.executed.exbits)[done:]:
            ref = bit.price if reference is None else reference
            self.fill_log.append({
                "time": order.data.datetime[0], "size": bit.size, "price": bit.price,
                "notional": abs(bit.size) * bit.price, "fee": bit.closedcomm + bit.openedcomm,
                "slippage": (bit.price - ref) * bit.size, "kind": kind, "liquidity": liquidity,
                "reference_price": ref, "pnl": bit.pnl})
        return out

    def _breaks_leverage_limit(self, order, price) -> bool:
        """Whether filling ``order`` at ``price`` leaves a position above its tier's leverage limit."""
        held = self.positions[order.data]
        size, new = order.executed.remsize, held.size + order.executed.remsize
        if new == 0.0 or (held.size != 0.0 and (new > 0) == (held.size > 0) and abs(new) <= abs(held.size)):
            return False  # closes or reduces
        if held.size == 0.0 or (new > 0) != (held.size > 0):
            entry = price
        else:
            entry = (held.price * held.size + size * price) / new
        return not leverage_allowed(abs(new) * entry, self.p.config.leverage, self._about(order.data)[1].margin_table)

    def _about(self, data) -> tuple:
        """(comminfo, :class:`TradingRules`, adverse-low line, adverse-high line) of ``data``, looked up once.

        The lines are the mark-price candle's where the feed has them, else the last-price candle's.
        """
        cached = self._per_data.get(data)
        if cached is None:
            rules = self.p.rules
            if rules is None:
                market = getattr(data.p, "market", None)
                rules = market_rules(getattr(market, "symbol", None), getattr(market, "exchange", "binanceusdm"))
            lines = data.lines
            cached = self._per_data[data] = (self.getcommissioninfo(data), rules,
                                             getattr(lines, "mark_low", lines.low),
                                             getattr(lines, "mark_high", lines.high))
        return cached

    def _check_wiped_out(self) -> None:
        """Flat, with less cash than the market's minimum order costs (margin + taker fee at this close): the
        account is wiped out and every later order is refused (``wiped_out_at``)."""
        cerebro = getattr(self, "cerebro", None)
        if self.wiped_out_at is not None or cerebro is None:
            return
        for data in cerebro.datas:
            if self.positions[data].size:
                return
            rules = self._about(data)[1]
            cfg = self.p.config
            if self.cash < minimum_cost(rules, data.close[0], cfg.leverage, self._taker):
                self.wiped_out_at = data.datetime[0]
                return

    # ------------------------------------------------------------------ per-bar fast path

    def get_notification(self):
        """The next order notice, or None (Backtrader's, without raising and catching IndexError every bar)."""
        return self.notifs.popleft() if self.notifs else None

    def _stock_next_needed(self) -> bool:
        """Whether this bar needs Backtrader's own ``BackBroker.next`` (orders to activate, submission checks, order
        or fund history: features lstmbt does not use); otherwise :meth:`_next_fast` does the same work."""
        return bool(self._toactivate or self.p.checksubmit or self._userhist or self._fundhist or self._cash_addition)

    def notify(self, order):
        """Queue a snapshot of ``order`` for the strategy, as ``BackBroker.notify`` does with ``order.clone()``: the
        same shallow copies of the order and of its execution record, made without ``copy.copy`` (whose probing of
        the order's ``__getattr__`` cost more than the rest of an order's life)."""
        if type(order).clone is not bt.Order.clone or type(order.executed).clone is not _OrderData.clone:
            return super().notify(order)
        snapshot = object.__new__(type(order))
        snapshot.__dict__.update(order.__dict__)
        executed = order.executed
        executed.markpending()
        snapshot.executed = copied = object.__new__(type(executed))
        copied.__dict__.update(executed.__dict__)
        self.notifs.append(snapshot)

    def _bar_lines(self, data) -> tuple:
        """Per-bar lookups of ``data``, done once: (comminfo, close line, funding-rate line, funding-inside line,
        the (automargin, mult, leverage) of a :class:`FuturesCommInfo` using Backtrader's own margin and PnL
        arithmetic (None otherwise: its methods are called)). Values are read as ``line.array[line._idx]``, which is
        ``line[0]``."""
        cached = self._bar_cache.get(data)
        if cached is None:
            comminfo = self._about(data)[0]
            lines = data.lines
            cls = type(comminfo)
            plain = (isinstance(comminfo, FuturesCommInfo) and cls.getvalue is FuturesCommInfo.getvalue
                     and cls.get_margin is bt.CommInfoBase.get_margin
                     and cls.get_leverage is bt.CommInfoBase.get_leverage
                     and cls.profitandloss is bt.CommInfoBase.profitandloss
                     and cls.cashadjust is bt.CommInfoBase.cashadjust and not comminfo._stocklike
                     and comminfo.p.automargin > 0)
            numbers = (comminfo.p.automargin, comminfo.p.mult, comminfo.p.leverage) if plain else None
            funding = (lines.funding_rate if isinstance(comminfo, FuturesCommInfo)
                       and cls.get_credit_interest is FuturesCommInfo.get_credit_interest
                       and hasattr(lines, "funding_rate") else None)
            cached = self._bar_cache[data] = (comminfo, lines.close, funding, getattr(lines, "funding_inside", None),
                                              numbers)
        return cached

    def _next_fast(self) -> None:
        """``BackBroker.next`` step for step (credit interest, pending orders, futures cash adjustment, value), with
        the per-data lookups (comminfo, lines) done once per run instead of every bar and the arithmetic of
        :class:`FuturesCommInfo` inlined (same operations in the same order: the same floats). A bar without a
        funding settlement at its open books no credit (``get_credit_interest`` would return 0.0); the position's
        ``datetime`` then keeps the time of its last fill or settlement (nothing reads it)."""
        positions = self.positions
        credit = 0.0
        for data, pos in positions.items():
            if pos.size:
                comminfo, _, funding, _, _ = self._bar_lines(data)
                if funding is not None and (not comminfo.p.funding or funding.array[funding._idx] == 0.0):
                    continue  # FuturesCommInfo.get_credit_interest returns 0.0 here
                dt0 = data.datetime.datetime()
                dcredit = comminfo.get_credit_interest(data, pos, dt0)
                self.d_credit[data] += dcredit
                credit += dcredit
                pos.datetime = dt0  # mark last credit operation
        self.cash -= credit
        pending = self.pending
        if pending:
            pending.append(None)
            while True:
                order = pending.popleft()
                if order is None:
                    break
                if order.expire():
                    self.notify(order)
                    self._ococheck(order)
                    self._bracketize(order, cancel=True)
                elif not order.active():
                    pending.append(order)  # cannot yet be processed
                else:
                    self._try_exec(order)
                    if order.alive():
                        pending.append(order)
                    elif order.status == bt.Order.Completed:
                        self._bracketize(order)  # a bracket parent order may have been executed
        for data, pos in positions.items():
            size = pos.size
            if size:
                comminfo, close_line, _, _, numbers = self._bar_lines(data)
                close = close_line.array[close_line._idx]
                if numbers is not None:
                    self.cash += size * (close - pos.adjbase) * numbers[1]
                else:
                    self.cash += comminfo.cashadjust(size, pos.adjbase, close)
                pos.adjbase = close  # record the last adjustment price
        self._get_value()

    def _get_value(self, datas=None, lever=False):
        """``BackBroker._get_value`` for the whole account, with per-data lookups cached and
        :class:`FuturesCommInfo`'s arithmetic inlined (same operations, same order); any other use (some datas,
        fund history, cash additions) goes to Backtrader's own."""
        if datas is not None or self._fundhist or self._cash_addition or self.p.shortcash:
            return super()._get_value(datas, lever)
        pos_value = pos_value_unlever = unrealized = 0.0
        for data, position in self.positions.items():
            comminfo, close_line, _, _, numbers = self._bar_lines(data)
            close = close_line.array[close_line._idx]
            size = position.size
            if numbers is not None:
                automargin, mult, leverage = numbers
                dvalue = abs(abs(size) * (position.price * automargin))
                dunrealized = size * (close - position.price) * mult
            else:
                dvalue = abs(comminfo.getvalue(position, close))
                dunrealized = comminfo.profitandloss(size, position.price, close)
                leverage = None
            pos_value += dvalue
            unrealized += dunrealized
            if dvalue > 0:  # long position - unlever
                dvalue -= dunrealized
                pos_value_unlever += (dvalue / (comminfo.get_leverage() if leverage is None else leverage))
                pos_value_unlever += dunrealized
            else:
                pos_value_unlever += dvalue
        self._value = self.cash + pos_value_unlever
        self._fundval = self._value / self._fundshares
        self._valuemkt = pos_value_unlever
        self._valuelever = self.cash + pos_value
        self._valuemktlever = pos_value
        self._leverage = pos_value / (pos_value_unlever or 1.0)
        self._unrealized = unrealized
        return self._value if not lever else self._valuelever

    # ------------------------------------------------------------------ liquidation

    def next(self):
        if self._stock_next_needed():
            super().next()
        else:
            self._next_fast()
        changed = self._settle_inside_bar() if self.p.config.funding else False
        if self.p.config.liquidation:
            for data, pos in list(self.positions.items()):
                if pos.size:
                    changed |= self._liquidate_if_due(data, pos)
        if changed:
            self._get_value()
        self._check_wiped_out()

    def _settle_inside_bar(self) -> bool:
        """Funding settled strictly inside this bar (after its open's fills) on the position held then:
        ``size x sum(rate x mark price at each instant)`` (the feed's ``funding_inside`` line)."""
        paid_any = False
        for data, pos in self.positions.items():
            inside = self._bar_lines(data)[3]
            if not pos.size or inside is None or inside.array[inside._idx] == 0.0 or not self._bar_is_new(data):
                continue
            comminfo = self.getcommissioninfo(data)
            paid = pos.size * inside[0]
            comminfo.funding_log.append((data.datetime[0], paid))
            comminfo.held_funding += paid
            self.d_credit[data] += paid
            self.cash -= paid
            paid_any = True
        return paid_any

    def _bar_is_new(self, data) -> bool:
        """Whether ``data`` has a new bar at this step: always with one feed; a portfolio's feed that starts later or
        has a gap stays on its last bar, and its settlements are not paid twice (the portfolio broker overrides)."""
        return True

    def _liquidate_if_due(self, data, pos) -> bool:
        """Liquidate ``pos`` if the bar's adverse mark extreme breaches maintenance, in the steps
        :func:`~backtests.margin.liquidation_steps` gives (a partial IOC close of large positions, a full close,
        or a bankruptcy close), each executed as a fill of kind ``"liquidation"``."""
        comminfo, rules, low, high = self._about(data)
        table = rules.margin_table
        size, entry = pos.size, pos.price
        margin = abs(size) * comminfo.get_margin(entry) - comminfo.held_funding  # funding comes out of it
        adverse = low[0] if size > 0 else high[0]
        if not is_liquidated(size, entry, margin, adverse, table):
            return False
        cfg = self.p.config
        steps = liquidation_steps(size, entry, margin, data.open[0], adverse, table,
                                  liquidation_fee_rate(cfg.liquidation_fee, rules), cfg.liquidation_model,
                                  rules.price_tick, rules.qty_step)
        for step in steps:
            cls = bt.order.BuyOrder if step.size > 0 else bt.order.SellOrder
            order = cls(owner=None, data=data, size=abs(step.size), price=step.price, exectype=bt.Order.Market)
            order.addinfo(kind="liquidation")
            self._ocoize(order, None)
            order.submit(self)
            order.accept(self)
            comminfo.rate = step.fee / (abs(step.size) * step.price) if step.price else 0.0
            self._fill = ("liquidation", "liquidation", step.price)
            try:
                self._execute(order, ago=0, price=step.price)
            finally:
                comminfo.rate = self._taker
                self._fill = ("market", "taker", None)
            if step.partial:   # the rest keeps the margin left: what its initial margin is not, it has paid
                comminfo.held_funding = abs(pos.size) * comminfo.get_margin(pos.price) - step.margin
        return True


def make_broker(config: BrokerConfig, symbol: str | None = None, rules: TradingRules | None = None
                ) -> tuple[FuturesBroker, FuturesCommInfo]:
    """A Backtrader broker set up for linear perpetuals: cash, fees, margin, slippage, funding, liquidation.

    ``rules`` (a market's :class:`~backtests.margin.TradingRules`: tiers, minimums) or ``symbol`` (ccxt form,
    "BTC/USDT:USDT", looked up with :func:`market_rules`); with neither they follow each
    :class:`~data_feeds.feed.FuturesData` feed's own market.
    """
    if rules is None and symbol is not None:
        rules = market_rules(symbol)
    broker = FuturesBroker(config=config, rules=rules,
                           int2pnl=False, shortcash=False, checksubmit=False)
    broker.setcash(config.cash)
    comminfo = FuturesCommInfo(commission=broker._taker, automargin=1.0 / config.leverage, funding=config.funding)
    broker.addcommissioninfo(comminfo)
    return broker, comminfo
