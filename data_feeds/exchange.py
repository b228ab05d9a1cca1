"""Talking to an exchange through ccxt: which exchanges, their page caps, constructor options, keys, one page.

Only ccxt's unified methods are used: ``fetch_ohlcv`` for candles, ``fetch_ohlcv(params={'price': 'mark'})``
for mark-price candles and ``fetch_funding_rate_history`` for funding. ``load_markets`` is limited to
linear markets (``options={'fetchMarkets': {'types': ['linear']}}``, the form ccxt 4.5 reads for both
binanceusdm and bybit), so Bybit's spot/inverse/option listings are never requested.

API keys are never read from files: only from ``LSTMBT_<EXCHANGE>_API_KEY`` / ``_SECRET`` / ``_PASSWORD``
environment variables, and they are not needed for the public market data a download uses.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Mapping

import ccxt

from data_feeds.errors import DataError

#: Largest page each exchange answers per kind (rows per request). Binance USDT-M: klines and mark-price
#: klines up to 1500 but requests above 1000 cost double weight; fundingRate up to 1000. Bybit v5: kline
#: and mark-price-kline up to 1000; funding/history up to 200.
PAGE_LIMITS: dict[str, dict[str, int]] = {
    "binanceusdm": {"candles": 1000, "mark": 1000, "funding": 1000},
    "bybit": {"candles": 1000, "mark": 1000, "funding": 200},
}
SUPPORTED_EXCHANGES = tuple(PAGE_LIMITS)

#: Constructor options a ``--exchange-config`` file may set.
CONFIG_KEYS = frozenset({
    "urls", "options", "timeout", "rateLimit", "enableRateLimit", "proxies", "httpProxy", "httpsProxy",
    "socksProxy", "proxyUrl", "headers", "hostname", "userAgent", "verify",
})
#: The type each option must have (ccxt would fail deep inside a request otherwise: ``timeout = "fast"``).
CONFIG_TYPES = {"timeout": "number", "rateLimit": "number", "enableRateLimit": bool, "urls": dict, "options": dict,
                "headers": dict, "proxies": dict, "httpProxy": str, "httpsProxy": str, "socksProxy": str,
                "proxyUrl": str, "hostname": str, "userAgent": str}
#: Credentials: accepted only from the environment, never from a config file.
SECRET_KEYS = frozenset({"apiKey", "secret", "password", "uid", "privateKey", "walletAddress", "token", "login",
                         "twofa"})
_ENV_SUFFIXES = {"apiKey": "API_KEY", "secret": "SECRET", "password": "PASSWORD"}


def check_exchange_id(exchange_id: str) -> str:
    """Return ``exchange_id`` if downloads support it, else raise DataError naming the supported ones."""
    if exchange_id not in PAGE_LIMITS:
        hint = difflib.get_close_matches(exchange_id, SUPPORTED_EXCHANGES, n=1)
        did = f"; did you mean {hint[0]}?" if hint else ""
        raise DataError(f"downloads support exchanges {', '.join(SUPPORTED_EXCHANGES)}, not {exchange_id!r}{did}")
    return exchange_id


def page_limit(exchange_id: str, kind: str, requested: int | None = None) -> int:
    """Rows per request for ``kind``: the exchange's cap, or ``requested`` when smaller (at least 2)."""
    cap = PAGE_LIMITS[check_exchange_id(exchange_id)][kind]
    if requested is None:
        return cap
    if requested < 2:
        raise DataError(f"page size must be at least 2 rows, not {requested}")
    return min(requested, cap)


def read_exchange_config(path: str | os.PathLike) -> dict:
    """ccxt constructor options from a ``.toml`` or ``.json`` file.

    Allowed keys are :data:`CONFIG_KEYS` (e.g. ``timeout = 30000``, ``[options]``, ``[urls.api]``); API keys are
    refused here, with the environment variable to use instead.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read exchange config {p}: {exc.strerror or exc}") from exc
    try:
        config = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
        raise DataError(f"exchange config {p} is not valid {kind}: {exc}") from exc
    if not isinstance(config, dict):
        raise DataError(f"exchange config {p} must hold a table/object of ccxt constructor options")
    check_exchange_config(config, str(p))
    return config


def check_exchange_config(config: Mapping, where: str = "exchange config") -> None:
    """Refuse credentials and unknown keys (a typo such as ``timout`` would be silently ignored by ccxt)."""
    secrets = sorted(k for k in config if k in SECRET_KEYS)
    if secrets:
        raise DataError(f"{where}: {', '.join(secrets)} must not be stored in a file; set "
                        f"LSTMBT_<EXCHANGE>_API_KEY / LSTMBT_<EXCHANGE>_SECRET in the environment instead")
    for key in config:
        if key not in CONFIG_KEYS:
            hint = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            raise DataError(f"{where}: unknown ccxt option {key!r}{did} (allowed: {', '.join(sorted(CONFIG_KEYS))})")
        value, kind = config[key], CONFIG_TYPES.get(key)
        if kind == "number" and not (is_finite(value) and value > 0):
            raise DataError(f"{where}: {key} must be a positive number (milliseconds), got {value!r:.60}")
        if kind is bool and not isinstance(value, bool):
            raise DataError(f"{where}: {key} must be true or false, got {value!r:.60}")
        if kind in (str, dict) and not isinstance(value, kind):
            what = "text" if kind is str else "a table"
            raise DataError(f"{where}: {key} must be {what}, got {value!r:.60}")


def credentials_from_env(exchange_id: str, environ: Mapping[str, str] | None = None) -> dict:
    """``{'apiKey': ..., 'secret': ...}`` from ``LSTMBT_<EXCHANGE>_API_KEY`` etc.; empty when none is set."""
    env = os.environ if environ is None else environ
    prefix = f"LSTMBT_{exchange_id.upper()}_"
    return {key: env[prefix + suffix] for key, suffix in _ENV_SUFFIXES.items() if env.get(prefix + suffix)}


def make_exchange(exchange_id: str, config: Mapping | None = None,
                  environ: Mapping[str, str] | None = None) -> ccxt.Exchange:
    """A ccxt exchange limited to linear markets, with the user's options and keys from the environment.

    Rate limiting stays on (ccxt's own throttle between requests); ``config`` may change ``rateLimit``.
    """
    check_exchange_id(exchange_id)
    user = dict(config or {})
    check_exchange_config(user)
    options = {"fetchMarkets": {"types": ["linear"]}}
    options.update(user.pop("options", {}) or {})
    # market data needs no currency list: skipping it keeps load_markets off private endpoints when keys are set
    settings = {"enableRateLimit": True, **user, "options": options, "has": {"fetchCurrencies": False},
                **credentials_from_env(exchange_id, environ)}
    return getattr(ccxt, exchange_id)(settings)


def check_market(exchange: ccxt.Exchange, symbol: str, timeframe: str) -> dict:
    """The loaded market for ``symbol``; it must be a linear perpetual and ``timeframe`` one the exchange serves."""
    market = exchange.markets.get(symbol) if exchange.markets else None
    if market is None:
        hint = difflib.get_close_matches(symbol, list(exchange.markets or {}), n=1)
        did = f"; did you mean {hint[0]}?" if hint else ""
        raise DataError(f"{exchange.id} has no linear market {symbol}{did}")
    if not (market.get("swap") and market.get("linear")):
        raise DataError(f"{exchange.id} {symbol} is not a linear perpetual (swap) market")
    if timeframe not in (exchange.timeframes or {}):
        raise DataError(f"{exchange.id} has no {timeframe} candles; it serves {', '.join(exchange.timeframes)}")
    return market


def has_mark_candles(exchange: ccxt.Exchange) -> bool:
    """Whether ccxt fetches mark-price candles for this exchange (``fetch_ohlcv(params={'price': 'mark'})``)."""
    return bool(exchange.has.get("fetchMarkOHLCV"))


def fetch_page(exchange: ccxt.Exchange, symbol: str, kind: str, timeframe: str, since: int, until: int,
               limit: int) -> list[list]:
    """One page of raw rows with timestamps in ``[since, until]`` (ms, both inclusive), as ccxt returns them.

    Candles and mark candles: ``[ms, open, high, low, close, volume]`` (mark candles carry no volume: 0.0).
    Funding: ``[ms, rate]``. Nothing is checked here; ccxt answers a malformed or HTML page with ``[]``.
    """
    if kind == "funding":
        out = exchange.fetch_funding_rate_history(symbol, since=since, limit=limit, params={"until": until})
        return [[row.get("timestamp"), row.get("fundingRate")] for row in out]
    params: dict = {"until": until}
    if kind == "mark":
        params["price"] = "mark"
    rows = exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit, params=params)
    if kind == "mark":
        rows = [list(r[:5]) + [0.0] if len(r) >= 5 else list(r) for r in rows]
    return rows


def is_finite(value) -> bool:
    """True for a real, finite number (ccxt gives None for a missing field)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
