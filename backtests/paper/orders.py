"""``lstmbt paper --demo``: the paper run's decisions sent as real market orders to an exchange's demo account.

Only demo (or testnet) accounts: the order client is switched to ccxt's demo-trading mode (Binance USDT-M,
Bybit) or, failing that, its sandbox mode, and every API url it holds must then be one of ccxt's demo/test
hosts for that exchange (or a loopback address, for a local test server): anything else is refused before
any order. Keys come from the environment only (``LSTMBT_<EXCHANGE>_API_KEY`` / ``_SECRET``) and are never
written anywhere. Decisions still come from the live market data; the demo fills (price, quantity, fee) are
recorded in ``demo_fills.csv`` for ``paper reconcile``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import ccxt
import pandas as pd

from data_feeds.retry import Retrier, RetryPolicy

DEMO_FILL_COLUMNS = ["time", "bar", "requested", "filled", "price", "fee", "order_id", "status"]


class DemoRefused(ValueError):
    """The exchange or its settings do not allow orders on a demo account only."""


def _hosts(urls) -> set[str]:
    if isinstance(urls, dict):
        return set().union(*(_hosts(v) for v in urls.values())) if urls else set()
    host = urlsplit(str(urls)).hostname if urls else None
    return {host.replace("{hostname}", "")} if host else set()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo_hosts(exchange_id: str) -> set[str]:
    """Hosts of ccxt's demo-trading and testnet urls for ``exchange_id`` (``demo-fapi.binance.com``...)."""
    urls = getattr(ccxt, exchange_id)().urls
    return {h for key in ("demo", "test") for h in _hosts(urls.get(key))}


def enable_demo(exchange) -> None:
    """Switch ``exchange`` to its demo account and check that every url it would send an order to is a demo,
    testnet or loopback host; raises :class:`DemoRefused` otherwise (also without keys)."""
    name = exchange.id
    if not (exchange.apiKey and exchange.secret):
        raise DemoRefused(f"--demo needs the demo account's keys in LSTMBT_{name.upper()}_API_KEY and "
                          f"LSTMBT_{name.upper()}_SECRET")
    if hasattr(exchange, "enable_demo_trading") and exchange.urls.get("demo"):
        exchange.enable_demo_trading(True)
    elif exchange.urls.get("test"):
        exchange.set_sandbox_mode(True)
    else:
        raise DemoRefused(f"{name} has no demo or testnet account in ccxt; lstmbt sends orders to demo accounts only")
    allowed = demo_hosts(name)
    wrong = sorted(h for h in _hosts(exchange.urls.get("api")) if h not in allowed and not _loopback(h))
    if wrong:
        raise DemoRefused(f"refusing to send orders: {name} would reach {', '.join(wrong)}, not a demo/testnet host")


@dataclass
class DemoAccount:
    """Market orders for ``symbol`` on a demo account; ``position`` is what the recorded fills add up to."""

    exchange: object
    symbol: str
    policy: RetryPolicy | None = None
    position: float = 0.0

    def __post_init__(self):
        enable_demo(self.exchange)
        self.retrier = Retrier(self.policy)
        self.retrier.call(self.exchange.load_markets, self.exchange)

    def set_leverage(self, leverage: float) -> None:
        """The account's leverage for the symbol (whole numbers on Binance; rounded up)."""
        self.retrier.call(lambda: self.exchange.set_leverage(int(-(-leverage // 1)), self.symbol), self.exchange)

    def trade_to(self, size: float, bar: pd.Timestamp) -> dict | None:
        """Send one market order that moves the demo position to ``size`` contracts; returns the fill record
        (``DEMO_FILL_COLUMNS``) or None when nothing needs to change. Not retried: an order sent twice trades twice."""
        delta = size - self.position
        amount = float(self.exchange.amount_to_precision(self.symbol, abs(delta))) if delta else 0.0
        if amount <= 0:
            return None
        order = self.exchange.create_order(self.symbol, "market", "buy" if delta > 0 else "sell", amount)
        trades = self.retrier.call(lambda: self.exchange.fetch_my_trades(self.symbol, params={"orderId": order["id"]}),
                                   self.exchange)
        trades = [t for t in trades if str(t.get("order")) == str(order["id"])]
        filled = float(order.get("filled") or sum(t["amount"] for t in trades))
        fee = sum(float((t.get("fee") or {}).get("cost") or 0.0) for t in trades)
        signed = filled if delta > 0 else -filled
        self.position += signed
        when = pd.Timestamp(order.get("timestamp") or self.exchange.milliseconds(), unit="ms", tz="UTC")
        return {"time": when.isoformat(), "bar": bar.isoformat(), "requested": delta, "filled": signed,
                "price": float(order.get("average") or order.get("price") or 0.0), "fee": fee,
                "order_id": str(order["id"]), "status": str(order.get("status"))}
