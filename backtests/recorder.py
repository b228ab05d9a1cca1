"""A Backtrader analyzer that records what the result object needs, bar by bar, into plain lists."""

from __future__ import annotations

import backtrader as bt


class Recorder(bt.Analyzer):
    """Per bar: account value and position at the close; per fill: time, size, price, fee, slippage.

    ``progress`` (optional) is called every ``every`` bars with the number of bars done.
    """

    params = (("progress", None), ("every", 2000))

    def start(self):
        self.equity: list[float] = []
        self.position: list[float] = []
        self.fills: list[tuple] = []

    def next(self):
        self.equity.append(self.strategy.broker.getvalue())
        self.position.append(self.strategy.position.size)
        n = len(self.equity)
        if self.p.progress is not None and n % self.p.every == 0:
            self.p.progress(n)

    def notify_order(self, order):
        if order.status != order.Completed:
            return
        data = order.data
        # market orders fill at this bar's open; slippage is the distance from it, against the order
        for bit in order.executed.exbits:
            open_price = data.open[0]
            slip = abs(bit.price - open_price) * abs(bit.size)
            self.fills.append((data.datetime[0], bit.size, bit.price, abs(bit.size) * bit.price,
                               bit.closedcomm + bit.openedcomm, slip, "market"))
