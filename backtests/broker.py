"""Futures accounting on Backtrader's own broker, through its documented seams.

USDT-margined linear perpetuals: one contract = one unit of the base asset (``size=0.5`` is half a
BTC), PnL = size x price change, fees = |size| x price x rate.

Backtrader's conventions, each pinned by a test in ``tests/test_broker.py``:

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
  margin check happens where an exchange makes it, at execution (next open), with the right prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import backtrader as bt


@dataclass(frozen=True)
class BrokerConfig:
    """Broker settings for one run.

    ``leverage=5``: initial margin is notional / 5. ``taker_fee=0.0005`` is 0.05 % of notional per fill
    (Binance USDT-M base tier: taker 0.05 %, maker 0.02 %). ``slippage_bps=1`` moves each market fill
    1 basis point (0.01 %) against the order, capped by the bar's high/low.
    """

    cash: float = 10_000.0
    leverage: float = 1.0
    taker_fee: float = 0.0005
    maker_fee: float = 0.0002
    slippage_bps: float = 1.0
    funding: bool = True

    def __post_init__(self):
        if not self.cash > 0:
            raise ValueError(f"cash must be positive, got {self.cash}")
        if not 1 <= self.leverage <= 125:
            raise ValueError(f"leverage must be between 1 and 125, got {self.leverage}")
        for name in ("taker_fee", "maker_fee", "slippage_bps"):
            if not 0 <= getattr(self, name) < (1 if name != "slippage_bps" else 10_000):
                raise ValueError(f"{name} out of range: {getattr(self, name)}")


class FuturesCommInfo(bt.CommInfoBase):
    """Linear-perpetual fees, margin and funding for one data feed (see the module docstring)."""

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
        return paid


def make_broker(config: BrokerConfig) -> tuple[bt.brokers.BackBroker, FuturesCommInfo]:
    """A Backtrader broker set up for linear perpetuals: cash, fees, margin, slippage and funding."""
    broker = bt.brokers.BackBroker(int2pnl=False, shortcash=False, checksubmit=False)
    broker.setcash(config.cash)
    comminfo = FuturesCommInfo(commission=config.taker_fee, automargin=1.0 / config.leverage, funding=config.funding)
    broker.addcommissioninfo(comminfo)
    if config.slippage_bps:
        broker.set_slippage_perc(config.slippage_bps / 10_000, slip_open=True, slip_limit=True, slip_match=True,
                                 slip_out=False)
    return broker, comminfo
