"""ccxt unified symbols ("BTC/USDT:USDT") and their file-name form ("BTC-USDT-USDT")."""

from __future__ import annotations

import re

from data_feeds.errors import DataError

MAX_LENGTH = 40
_SYMBOL = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+(:[A-Z0-9]+)?$")


def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it looks like a ccxt unified symbol, else raise DataError."""
    if not isinstance(symbol, str) or len(symbol) > MAX_LENGTH:
        shown = repr(symbol)[:40] + ("..." if len(repr(symbol)) > 40 else "")
        raise DataError(f"malformed symbol {shown}; expected a ccxt unified symbol such as 'BTC/USDT:USDT' "
                        f"(at most {MAX_LENGTH} characters)")
    if not _SYMBOL.match(symbol or ""):
        raise DataError(f"malformed symbol {symbol!r}; expected a ccxt unified symbol such as 'BTC/USDT:USDT'")
    return symbol


def symbol_to_filename(symbol: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC-USDT-USDT"`` (safe in file names)."""
    return check_symbol(symbol).replace("/", "-").replace(":", "-")
