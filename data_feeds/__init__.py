"""Market data for lstmbt: loading, validation, the local store and the Backtrader feed.

>>> from data_feeds import load
>>> df = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-31")   # doctest: +SKIP
"""

from data_feeds.errors import DataError
from data_feeds.loader import MarketData, load, load_market, parse_span, parse_time
from data_feeds.store import Store
from data_feeds.timeframes import bars_per_year, timeframe_seconds
from data_feeds.validate import find_gaps

__all__ = ["DataError", "MarketData", "Store", "bars_per_year", "find_gaps", "load", "load_market", "parse_span",
           "parse_time", "timeframe_seconds"]
