"""A Backtrader analyzer that records what the result object needs, bar by bar, into compact float arrays."""

from __future__ import annotations

import gc
from array import array

import backtrader as bt

from backtests.attribution import Attribution, attribute_pnl
from backtests.result import FILL_COLUMNS


class Recorder(bt.Analyzer):
    """Per bar: account value and position at the close. At the end: the broker's fills and the PnL attribution.

    Needs a :class:`~backtests.broker.FuturesBroker` (it keeps the fill log). After the run:

    - ``fills``: one tuple per execution in :data:`~backtests.result.FILL_COLUMNS` order (liquidations included);
    - ``fill_log``: the same executions as dicts with every detail the broker knows (liquidity, reference price,
      realised PnL);
    - ``attribution``: an :class:`~backtests.attribution.Attribution` summing to final equity - starting cash.

    ``progress`` (optional) is called every ``every`` bars with the number of bars done.
    """

    params = (("progress", None), ("every", 2000))
    ignores_cash_notices = True  # its notice hooks below do nothing: the strategy may skip those notices

    def start(self):
        self._froze = _freeze_heap()
        self.equity = array("d")       # 8 bytes a bar, not a Python float object per bar
        self.position = array("d")
        self.fills: list[tuple] = []
        self.fill_log: list[dict] = []
        self.attribution: Attribution | None = None
        broker = self.strategy.broker
        self._value = broker.getvalue
        # Backtrader's own get_value() returns the value its broker keeps current: read it without the call
        self._broker = broker if type(broker).getvalue is bt.brokers.BackBroker.getvalue else None
        self._positions = broker.positions
        self._data = self.strategy.data
        self._progress, self._every = self.p.progress, self.p.every

    def _next(self):
        """One call a bar: no children to walk and no calendar period to track (this analyzer has neither)."""
        self.next()

    def _notify_cashvalue(self, cash, value):
        """Nothing to do with Backtrader's per-bar cash/value notice (the value is read in :meth:`next`)."""

    def _notify_fund(self, cash, value, fundvalue, shares):
        """Nothing to do with the per-bar fund notice."""

    def next(self):
        broker = self._broker
        self.equity.append(broker._value if broker is not None else self._value())
        self.position.append(self._positions[self._data].size)
        if self._progress is not None and len(self.equity) % self._every == 0:
            self._progress(len(self.equity))

    def stop(self):
        if self._froze:
            _unfreeze_heap()
            self._froze = False
        broker = self.strategy.broker
        data = self.strategy.data
        self.fill_log = list(broker.fill_log)
        self.fills = [tuple(fill[c] for c in FILL_COLUMNS) for fill in self.fill_log]
        funding_paid = sum(paid for _, paid in broker.getcommissioninfo(data).funding_log)
        last_close = data.close[0] if len(data) else 0.0
        self.attribution = attribute_pnl(self.fill_log, funding_paid, self.strategy.position.size, last_close)


_FROZEN_BY_US = False  # whether the objects gc.freeze() holds now were frozen by a Recorder


def _freeze_heap() -> bool:
    """Move every object alive at the run's start (candles, features, predictions, the model) out of the garbage
    collector's reach for the run (``gc.freeze``): the bar loop allocates orders and notices, and each full
    collection it triggers would otherwise walk those hundreds of thousands of objects again (about 12 % of a
    50,000-bar sma_cross run's CPU time); the young generations are collected first (a cheap pass) so that the
    preparation's garbage is not frozen with them. :meth:`Recorder.stop` unfreezes them; a run that died before
    its stop leaves them frozen until the next run here ends. Skipped when the collector is off or someone else froze
    objects (their freeze is theirs)."""
    global _FROZEN_BY_US
    if not gc.isenabled() or (gc.get_freeze_count() and not _FROZEN_BY_US):
        return False
    gc.collect(1)  # young garbage first (the preparation's temporaries): frozen, it would live through the run
    gc.freeze()
    _FROZEN_BY_US = True
    return True


def _unfreeze_heap() -> None:
    global _FROZEN_BY_US
    gc.unfreeze()
    _FROZEN_BY_US = False
