"""Shared fixtures: every test gets an empty data store and model cache of its own."""

from __future__ import annotations

import functools
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

# CI replays the same examples on every run (a red build is then always reproducible); locally hypothesis
# keeps exploring new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path_factory, monkeypatch):
    """Keep tests away from the user's real store and model cache."""
    root = tmp_path_factory.mktemp("lstmbt-home")
    monkeypatch.setenv("LSTMBT_DATA_DIR", str(root / "store"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))
    return root


def make_candles(closes, start="2024-01-01", freq="1h", spread=0.002, volume=10.0) -> pd.DataFrame:
    """Hand-made candles: open = previous close, high/low a fixed spread around the body."""
    closes = np.asarray(closes, dtype="float64")
    opens = np.concatenate([[closes[0]], closes[:-1]])
    index = pd.date_range(start, periods=len(closes), freq=freq, tz="UTC", name="timestamp")
    return pd.DataFrame({
        "open": opens,
        "high": np.maximum(opens, closes) * (1 + spread),
        "low": np.minimum(opens, closes) * (1 - spread),
        "close": closes,
        "volume": np.full(len(closes), volume),
    }, index=index)


def write_candles_csv(df: pd.DataFrame, path) -> None:
    """Write candles the way users and the shipped sample do: epoch milliseconds + OHLCV."""
    out = df.copy()
    out.insert(0, "timestamp", out.index.as_unit("ms").asi8)
    out.to_csv(path, index=False)


@functools.lru_cache(maxsize=1)
def btc_1h_early_2023() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real BTC/USDT:USDT 1h candles and funding, 2023-01-01 .. 2023-02-28: the small span LSTM tests train on
    (loaded once per test session; treat the frames as read-only)."""
    from data_feeds import load_market

    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-02-28")
    return m.candles, m.funding
