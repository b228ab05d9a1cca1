"""Deliberately biased strategies that the lookahead audit must catch (they exist for its tests; never trade them).

- :class:`PeekingFeature`: its feature is the *next* bar's log return (``close.shift(-1)``, the forbidden shift);
  it goes long before every up bar. The audit must flag ``features`` and ``target``.
- :class:`PeekingScaler`: causal features (``ret_1``, ``ret_4``) but standardised with a scaler fitted on every bar
  it is given, the backtest span included. The audit must flag ``scaler``; ``features`` stay clean.

- :class:`PeekingSchedule`: long for the first half of the bars it is given, short for the second half. It reads no
  future price, only where the data ends (``buflen()``): blanking the future keeps that end, so only the audit's
  run on truly truncated data catches it (component ``truncated``).

- :class:`PeekingPortfolio`: a portfolio strategy long each symbol before its rising bars and short before its
  falling ones (each symbol's *next* close, read in ``prepare``). ``check-lookahead --symbols ...`` must flag
  ``target``.

The first two return the audit's probe in ``Prepared.probe``: an object whose ``components(market, span_start)``
recomputes what the strategy decided from, exactly as ``prepare`` did. Run one through the engine by its spec,
e.g. ``strategies.peeking:PeekingFeature``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from strategies.base import TargetPositionStrategy
from strategies.contract import Prepared
from strategies.portfolio import PortfolioStrategy
from strategies.lstm.features import Scaler, compute_features, warmup_bars
from strategies.signal import Signal

SCALED_FEATURES = ("ret_1", "ret_4")


def next_bar_return(candles: pd.DataFrame) -> pd.DataFrame:
    """The biased feature: log(close[t+1] / close[t]) in column ``next_ret``; NaN on the last bar (no next bar)."""
    close = candles["close"]
    return pd.DataFrame({"next_ret": np.log(close.shift(-1) / close)}, index=candles.index)


def signals_from(values: pd.Series) -> list[float]:
    """LONG where the value is above 0, SHORT below, FLAT at 0 or NaN."""
    return [float(Signal.FLAT if not np.isfinite(v) or v == 0 else Signal.LONG if v > 0 else Signal.SHORT)
            for v in values.to_numpy(np.float64)]


class _PrecomputedSignals(TargetPositionStrategy):
    """Trades ``signals[i]`` on span bar i (computed in ``prepare``)."""

    params = (("signals", None), ("scaler", None))

    def target(self) -> float:
        return self.p.signals[len(self) - 1]


class NextBarProbe:
    """Components of :class:`PeekingFeature`: its ``features`` frame over the span."""

    def components(self, market, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]:
        feats = next_bar_return(market.candles)
        return {"features": feats[feats.index >= span_start]}


class PeekingFeature(_PrecomputedSignals):
    """Long before a rising bar, short before a falling one: it reads ``close[t+1]`` on bar t."""

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> Prepared:
        params = cls.check_params(config.params)
        feats = NextBarProbe().components(market, span_start)["features"]
        return Prepared(params={**params, "signals": signals_from(feats["next_ret"])}, probe=NextBarProbe())


class ScaledFeatureProbe:
    """Components of :class:`PeekingScaler`: causal ``features`` and their ``scaler`` outputs over the span."""

    def __init__(self, scaler: Scaler) -> None:
        self.scaler = scaler

    def components(self, market, span_start: pd.Timestamp) -> dict[str, pd.DataFrame]:
        feats = compute_features(market.candles, market.funding, SCALED_FEATURES)
        scaled = pd.DataFrame(self.scaler.transform(feats), index=feats.index, columns=feats.columns)
        in_span = feats.index >= span_start
        return {"features": feats[in_span], "scaler": scaled[in_span]}


class PeekingScaler(_PrecomputedSignals):
    """Long while the standardised 4-bar return is above 0 (i.e. above its mean over *all* bars given), else short."""

    @classmethod
    def history_bars(cls, config) -> int:
        return warmup_bars(SCALED_FEATURES) + 1

    @classmethod
    def prepare(cls, config, market, span_start, progress=None) -> Prepared:
        params = cls.check_params(config.params)
        feats = compute_features(market.candles, market.funding, SCALED_FEATURES)
        scaler = Scaler.fit(feats.dropna())                     # the bias: fitted on the span too
        scaled = ScaledFeatureProbe(scaler).components(market, span_start)["scaler"]
        return Prepared(params={**params, "signals": signals_from(scaled["ret_4"]), "scaler": scaler},
                        probe=ScaledFeatureProbe(scaler))


class PeekingSchedule(TargetPositionStrategy):
    """Long on the first half of the bars it is given, short on the second: ``buflen()`` is the number of bars up to
    the end of the data, which a live strategy cannot know."""

    def target(self) -> float:
        return Signal.LONG if 2 * len(self) <= self.data.buflen() else Signal.SHORT


class PeekingPortfolio(PortfolioStrategy):
    """Long every symbol before its rising bars, short before its falling ones: it reads each symbol's ``close[t+1]``
    on bar t (computed in ``prepare`` from each symbol's own candles)."""

    params = (("signals", None),)

    @classmethod
    def prepare(cls, config, data, span_start, progress=None) -> Prepared:
        params = cls.check_params(config.params)
        signals = {}
        for symbol, market in data.markets.items():
            feats = next_bar_return(market.candles)
            signals[symbol] = signals_from(feats["next_ret"][feats.index >= span_start])
        return Prepared(params={**params, "signals": signals})

    def target(self):
        return {s: self.p.signals[s][len(self.feed(s)) - 1] for s in self.symbols if self.has_candle(s)}
