"""The target-position strategy: subclasses say where they want to be, the base class trades there.

Each bar, :meth:`TargetPositionStrategy.target` returns a number in [-1, 1] (usually a
:class:`~strategies.signal.Signal`), decided from data up to and including this bar's close. When it
differs from the previous target, the base class sends one market order for the difference, which
Backtrader fills at the next bar's open.

Size: the position's initial margin plus its opening cost (fee and slippage, ``cost_rate`` per unit of
notional) use ``fraction`` of equity, so

    notional = target x fraction x equity x leverage / (1 + leverage x cost_rate)

rounded toward zero to the market's quantity step. ``fraction=0.99, leverage=2, cost_rate=0.0006`` on
10,000 USDT at a close of 50,000: notional 19,776.27, 0.395 BTC. Without the cost term a 50x position
would need more than the whole equity for margin plus fee and be refused.
"""

from __future__ import annotations

import math
from array import array

import backtrader as bt
from backtrader.linebuffer import LineBuffer
from backtrader.lineiterator import LineIterator
from backtrader.lineseries import Lines

from strategies.contract import Prepared
from strategies.signal import Signal


def position_size(target: float, equity: float, price: float, *, fraction: float, leverage: float,
                  cost_rate: float = 0.0, qty_step: float = 0.0, min_qty: float = 0.0) -> tuple[float, str]:
    """Contracts for ``target`` (in [-1, 1]) and, when the answer is a forced 0, why.

    ``notional = target x fraction x equity x leverage / (1 + leverage x cost_rate)``, rounded toward zero to
    ``qty_step``. Below ``min_qty`` or with no equity left (a liquidation took it all) the size is 0: flat.
    ``position_size(1, 10_000, 50_000, fraction=0.99, leverage=2, cost_rate=0.0006, qty_step=0.001)`` is 0.395.
    """
    if target and equity <= 0:
        return 0.0, "no equity left"
    wanted = target * fraction * equity * leverage / (1 + leverage * cost_rate) / price
    size = math.copysign(math.floor(abs(wanted) / qty_step + 1e-9) * qty_step, wanted) if qty_step else wanted
    if target and (size == 0 or abs(size) < min_qty):
        return 0.0, f"size {abs(wanted):.6g} below the market's minimum quantity {max(min_qty, qty_step):g}"
    return size, ""


_NAN = float("nan")


def _buffer_of(obj):
    """The line buffer whose ``lencount`` is ``len(obj)`` (a data feed, an indicator, a line), or None."""
    for _ in range(8):
        if isinstance(obj, LineBuffer):
            return obj
        obj = obj.lines[0]
    return None


def _plain_buffer(line) -> bool:
    """A buffer Backtrader keeps unbounded and moves with its own ``advance``/``forward``/``__setitem__``."""
    cls = type(line)
    return (isinstance(line, LineBuffer) and line.mode == LineBuffer.UnBounded and not line.bindings
            and cls.advance is LineBuffer.advance and cls.forward is LineBuffer.forward
            and cls.__setitem__ is LineBuffer.__setitem__)


def _bar_plan(strategy):
    """What :meth:`TargetPositionStrategy._oncepost` moves each bar, looked up once: per indicator (its clock's
    buffer, its own first buffer, its line buffers or None to call its ``advance``, the indicator), the strategy's
    own line buffers, its datetime buffer, its analyzers, whether its per-bar notice step must run. False where
    Backtrader's own step must run (observers, the old clock, a strategy that overrides the per-bar hooks, lines
    that are bounded or bound to others)."""
    it = LineIterator
    if (strategy._oldsync or strategy._lineiterators[it.ObsType] or strategy._slave_analyzers
            or type(strategy)._next_analyzers is not bt.Strategy._next_analyzers
            or type(strategy).clear is not bt.Strategy.clear or type(strategy).forward is not bt.LineSeries.forward):
        return False
    indicators = []
    for indicator in strategy._lineiterators[it.IndType]:
        clock, first = _buffer_of(indicator._clock), _buffer_of(indicator)
        if clock is None or first is None or len(clock) != len(indicator._clock) or len(first) != len(indicator):
            return False
        lines = list(indicator.lines)
        plain = (type(indicator).advance is bt.Indicator.advance and type(indicator.lines).advance is Lines.advance
                 and first is (lines[0] if lines else None) and all(_plain_buffer(line) for line in lines))
        indicators.append((clock, first, lines if plain else None, indicator))
    own = list(strategy.lines)
    if not own or not all(_plain_buffer(line) for line in own) or type(strategy.lines).forward is not Lines.forward:
        return False
    # the per-bar cash/value notices: skipped outright when nobody listens (see TargetPositionStrategy._notify)
    notices = (type(strategy)._notify is not TargetPositionStrategy._notify or not strategy.cerebro.p.quicknotify
               or strategy._cash_listeners())
    return indicators, own, strategy.lines.datetime, list(strategy.analyzers), notices


class TargetPositionStrategy(bt.Strategy):
    """Base class for every lstmbt strategy, shipped or yours: override :meth:`target`.

    The contract:

    - ``target()`` is called on each bar's close once the strategy's indicators are ready (``prenext`` bars stay
      flat) and returns the wanted position in [-1, 1] (``Signal.LONG`` = 1: ``fraction`` of equity as margin at
      ``leverage``; 0.5 half that; ``Signal.SHORT`` = -1). Read data backwards only: ``self.data.close[0]`` is this
      bar's close, ``[-1]`` the previous one; a positive index is the future and ``lstmbt check-lookahead``
      flags it. A change of target is one market order, filled at the next bar's open.
    - ``params = (("period", 14),)`` declares tunable parameters; the config's ``[params]`` table (or
      ``Backtest(..., params=...)``) sets them, and an unknown key is a one-line error.
    - ``prepare(config, market, span_start)`` (optional, a classmethod) runs once before the backtest with the
      market data (plus ``history_bars(config)`` bars before ``span_start``) and returns a
      :class:`~strategies.contract.Prepared`: params to pass, a signal source to record, a lookahead probe,
      model records. Fit models there on bars before ``span_start`` only.
    """

    params = (
        ("fraction", 0.99),
        ("leverage", 1.0),
        ("cost_rate", 0.0),
        ("qty_step", 0.0),
        ("min_qty", 0.0),
    )

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> Prepared:
        """What the run needs, as a :class:`~strategies.contract.Prepared`: the config's ``[params]`` table,
        checked, as ``params``. Subclasses add what they compute before the run from ``market`` (which may hold
        history before ``span_start``): a signal source, a lookahead probe, model records."""
        return Prepared(params=cls.check_params(config.params))

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """``params`` if every key is a tunable parameter of this strategy, else a one-line error."""
        valid = sorted(set(cls.params._getkeys()) - set(TargetPositionStrategy.params._getkeys()) - {"predictor"})
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for strategy {cls.__name__}; "
                             f"valid: {', '.join(valid) or 'none'}")
        return dict(params)

    @classmethod
    def history_bars(cls, config) -> int:
        """Bars of history before the span start that :meth:`prepare` needs (0: none)."""
        return 0

    def __init__(self):
        self.targets = array("d")  # one target a bar, 8 bytes each
        self.rejected: list[tuple[float, float, float, str]] = []  # (bt date, size, price, reason)
        self._target = 0.0

    def target(self) -> float:
        """Target position in [-1, 1] for this bar's close. Subclasses must implement it."""
        raise NotImplementedError

    def prenext(self):
        """Bars before the strategy's indicators are ready: stay flat."""
        self.targets.append(float(Signal.FLAT))

    def next(self):
        target = float(self.target())
        self.targets.append(target)
        if target != self._target:
            self._target = target
            self._trade_to(target)

    def _trade_to(self, target: float) -> None:
        if getattr(self.broker, "wiped_out_at", None) is not None:
            return  # the account can no longer open the market's minimum position: the run stops trading
        price = self.data.close[0]
        p = self.p
        size, refused = position_size(target, self.broker.getvalue(), price, fraction=p.fraction, leverage=p.leverage,
                                      cost_rate=p.cost_rate, qty_step=p.qty_step, min_qty=p.min_qty)
        if refused:
            self.rejected.append((self.data.datetime[0], target, price, refused))
        self.order_target_size(target=size)

    def _oncepost(self, dt):
        """Backtrader's per-bar step in ``runonce`` mode (advance the indicators, move the strategy's lines, notices,
        ``next``, analyzers), with the line buffers moved directly and the lookups done once per run (see
        :func:`_bar_plan`). Runs with observers, the old clock, bound or bounded lines take Backtrader's own step."""
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._plan = _bar_plan(self)
        if plan is False:
            return super()._oncepost(dt)
        indicators, own_lines, dt_line, analyzers, notices = plan
        for clock, first, lines, indicator in indicators:
            if clock.lencount > first.lencount:
                if lines is None:
                    indicator.advance()
                else:
                    for line in lines:
                        line._idx += 1
                        line.lencount += 1
        for line in own_lines:  # LineBuffer.forward(NAN)
            line._idx += 1
            line.lencount += 1
            line.array.append(_NAN)
        dt_line.array[dt_line._idx] = dt
        if notices:
            self._notify()
        minperstatus = self._getminperstatus()
        if minperstatus < 0:
            self.next()
            for analyzer in analyzers:
                analyzer._next()
        elif minperstatus == 0:
            self.nextstart()
            for analyzer in analyzers:
                analyzer._nextstart()
        else:
            self.prenext()
            for analyzer in analyzers:
                analyzer._prenext()
        if self._orderspending or self._tradespending:
            self.clear()

    def __len__(self):
        """Bars seen so far (Backtrader's ``len(strategy)``: its first line's length, read without two proxies)."""
        return self.lines.lines[0].lencount

    def clear(self):
        """Backtrader's per-bar reset of the notices delivered this bar, without its archive: stock ``clear`` also
        appends every delivered order notice to ``Strategy._orders``, which nothing in Backtrader reads, so memory
        grew with the number of orders (about 0.6 KB an order: 0.6 GB over a million bars that send one each)."""
        self._orderspending = list()
        self._tradespending = list()

    def _notify(self, qorders=[], qtrades=[]):  # noqa: B006 (Backtrader's signature)
        """Backtrader's notification step. Its per-bar cash/value/fund notices go to the strategy and each analyzer;
        when none of them overrides those hooks (the usual case) the notices are skipped: nothing else changes."""
        if qorders or qtrades or not self.cerebro.p.quicknotify or self._cash_listeners():
            super()._notify(qorders, qtrades)

    def _addnotification(self, order, quicknotify=False):
        """Backtrader's order notice step. Besides the notice it books Backtrader's ``Trade`` objects for
        ``notify_trade``; when neither the strategy, an analyzer nor an observer listens to trades (the usual case:
        lstmbt builds its trades from the broker's fills) only the order notice is delivered: nothing else changes."""
        if not quicknotify or self._trade_listeners():
            return super()._addnotification(order, quicknotify)
        if not order.p.simulated:
            self._orderspending.append(order)
        self._notify(qorders=[order], qtrades=[])

    def _trade_listeners(self) -> bool:
        listeners = self.__dict__.get("_trade_ears")
        if listeners is None:
            analyzers = list(self.analyzers) + list(self._slave_analyzers)
            listeners = self._trade_ears = bool(
                type(self).notify_trade is not bt.Strategy.notify_trade or self._lineiterators[LineIterator.ObsType]
                or any(a._children or type(a).notify_trade is not bt.Analyzer.notify_trade
                       or type(a)._notify_trade is not bt.Analyzer._notify_trade for a in analyzers))
        return listeners

    def _getminperstatus(self):
        """Backtrader's minimum-period status (> 0 warming up, 0 first ready bar, < 0 after) for one data feed,
        reading the feed's length from its first line directly instead of through Backtrader's proxies."""
        if len(self.datas) != 1:
            return super()._getminperstatus()
        line0 = getattr(self, "_line0", None)
        if line0 is None:
            line0 = self._line0 = self.datas[0].lines[0]
        self._minperstatus = status = self._minperiods[0] - line0.lencount
        return status

    def _cash_listeners(self) -> bool:
        listeners = getattr(self, "_listeners", None)
        if listeners is None:
            def overrides(obj, base, *names):
                return any(getattr(type(obj), n) is not getattr(base, n) for n in names)

            analyzers = list(self.analyzers) + list(self._slave_analyzers)
            listeners = self._listeners = (
                overrides(self, bt.Strategy, "notify_cashvalue", "notify_fund")
                or any(a._children or overrides(a, bt.Analyzer, "notify_cashvalue", "notify_fund",
                                                "_notify_cashvalue", "_notify_fund")
                       and not getattr(a, "ignores_cash_notices", False) for a in analyzers))
        return listeners

    def notify_order(self, order):
        """Record refused orders; the strategy does not retry them until its target changes again."""
        if order.status in (order.Margin, order.Rejected):
            reason = order.info.get("reason") or ("not enough margin" if order.status == order.Margin else "rejected by broker")
            self.rejected.append((self.data.datetime[0], order.created.size, order.created.price, reason))
