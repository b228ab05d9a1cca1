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

import backtrader as bt

from strategies.signal import Signal


class TargetPositionStrategy(bt.Strategy):
    """Base class for every lstmbt strategy. Override :meth:`target` (and :meth:`prepare` to fit things
    before the run from history that precedes the backtest span)."""

    params = (
        ("fraction", 0.99),
        ("leverage", 1.0),
        ("cost_rate", 0.0),
        ("qty_step", 0.0),
        ("min_qty", 0.0),
    )

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> dict:
        """Backtrader params for this run: the config's ``[params]`` table, checked, plus anything a subclass
        computes before the run from ``market`` (which may hold history before ``span_start``). An ``extras``
        entry (a plain dict, e.g. model checkpoint hashes) is not a param: it goes to ``BacktestResult.extras``."""
        return cls.check_params(config.params)

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
        self.targets: list[float] = []
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
        price = self.data.close[0]
        leverage = self.p.leverage
        notional = target * self.p.fraction * self.broker.getvalue() * leverage / (1 + leverage * self.p.cost_rate)
        size = notional / price
        step = self.p.qty_step
        if step:
            size = math.copysign(math.floor(abs(size) / step + 1e-9) * step, size)
        if size and abs(size) < self.p.min_qty:
            self.rejected.append((self.data.datetime[0], size, price, f"below minimum quantity {self.p.min_qty}"))
            size = 0.0
        self.order_target_size(target=size)

    def notify_order(self, order):
        """Record refused orders; the strategy does not retry them until its target changes again."""
        if order.status in (order.Margin, order.Rejected):
            reason = order.info.get("reason") or ("not enough margin" if order.status == order.Margin else "rejected by broker")
            self.rejected.append((self.data.datetime[0], order.created.size, order.created.price, reason))
