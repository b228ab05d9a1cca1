"""ccxt unified symbols ("BTC/USDT:USDT") and their file-name form ("BTC-USDT-USDT")."""

from __future__ import annotations

import re

from data_feeds.errors import DataError

_SYMBOL = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it looks like a ccxt unified symbol, else raise DataError."""
    if not _SYMBOL.match(symbol or ""):
        raise DataError(f"malformed symbol {symbol!r}; expected a ccxt unified symbol such as 'BTC/USDT:USDT'")
    return symbol


def symbol_to_filename(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC-USDT-USDT"`` (safe in file names)."""
    return check_symbol(symbol).replace("/", "-").replace(":", "-")
