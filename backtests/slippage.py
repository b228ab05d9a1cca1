"""Slippage models for market fills: where a market order fills, given the bar it fills in.

A market order decided on bar t's close fills at bar t+1's open, moved against the order by the model's
distance and never beyond that bar's high (buys) or low (sells):

- ``"none"``: the open.
- ``"fixed"``: ``bps`` basis points of the open. ``bps=1``: a buy at an open of 50,000 fills at 50,005.
- ``"range"``: ``coef`` x the bar's range (high - low). ``coef=0.1``, range 200: 20 against the order.
- ``"volume"``: ``coef`` x range x the order's share of the bar's volume (``|size| / volume``, at most 1), a
  market-impact model: 2 BTC in a bar that traded 100 BTC with range 200 and ``coef=1`` moves it by 4.

The models are a cost only: they read the fill bar's candle, but nothing the strategy decides depends on it.
"""

from __future__ import annotations

SLIPPAGE_MODELS = ("none", "fixed", "range", "volume")


def check_model(model: str) -> str:
    """``model`` if it is one of :data:`SLIPPAGE_MODELS`, else ValueError naming the valid ones."""
    if model not in SLIPPAGE_MODELS:
        raise ValueError(f"unknown slippage model {model!r}; use one of {', '.join(SLIPPAGE_MODELS)}")
    return model


def fill_price(model: str, size: float, open_: float, high: float, low: float, volume: float, *,
               bps: float = 0.0, coef: float = 0.0) -> float:
    """Fill price of a market order of signed ``size`` (+ buy, - sell) at this bar's open.

    >>> fill_price("fixed", 1.0, 100.0, 101.0, 99.0, 10.0, bps=10)       # 100 x (1 + 0.001)
    100.1
    >>> fill_price("range", -1.0, 100.0, 101.0, 99.0, 10.0, coef=0.25)   # 100 - 0.25 x 2
    99.5
    """
    if model == "fixed":
        # the same expression Backtrader's ``set_slippage_perc`` uses, so default runs keep their exact prices
        perc = bps / 10_000
        price = open_ * (1 + perc) if size > 0 else open_ * (1 - perc)
    elif model == "range" or model == "volume":
        distance = coef * (high - low)
        if model == "volume":
            distance *= min(1.0, abs(size) / volume) if volume > 0 else 1.0
        price = open_ + distance if size > 0 else open_ - distance
    elif model == "none":
        return open_
    else:
        check_model(model)
    if size > 0:
        return price if price <= high else high
    return price if price >= low else low
