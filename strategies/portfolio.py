"""Portfolio strategies: several perpetuals traded from one account, a target in [-1, 1] per symbol.

A :class:`PortfolioStrategy` sees one Backtrader data feed per symbol, all on one clock (the union of the symbols'
bar times, see :mod:`backtests.portfolio.data`). On each bar's close :meth:`PortfolioStrategy.target` returns a
target per symbol, ``{"BTC/USDT:USDT": 1.0, "ETH/USDT:USDT": -0.5}`` (or a sequence in ``self.symbols`` order);
when a symbol's target changes, one market order for the difference is sent, filled at that symbol's next open.

Size of symbol s: its initial margin plus opening cost use ``weight_s x fraction`` of the account's equity::

    notional_s = target_s x weight_s x fraction x equity x leverage / (1 + leverage x cost_rate)

rounded toward zero to the market's quantity step. Weights default to equal shares (1/n each); configured weights
are normalised to sum to 1, so a full target on every symbol uses ``fraction`` of equity as margin in all.
Two symbols at weight 0.5, 10,000 USDT, leverage 3, fraction 0.99, cost 0.0006: a full long of BTC at 50,000 is
14,824 USDT of notional, 0.296 BTC.

A symbol with no candle at a bar (it starts later, or its data has a gap) is never traded there: its target is not
asked for, an order is only sent on a bar where that symbol has its candle (:meth:`PortfolioStrategy.has_candle`),
and its price is never forward-filled. The standing target (the last one decided) is what ``targets`` records.

Shipped: ``buy_hold`` and ``flat`` on several symbols (:class:`PortfolioBuyAndHold`, equal weights: the baseline)
and ``lstm_portfolio`` (:class:`LSTMPortfolio`). Your own: subclass :class:`PortfolioStrategy` in a file and run
``lstmbt backtest --strategy my_pairs.py:PairTrade --symbols BTC/USDT:USDT,ETH/USDT:USDT`` (see
``strategies/examples/pairs_trade.py``).
"""

from __future__ import annotations

import math
from array import array

from strategies.base import TargetPositionStrategy, position_size
from strategies.contract import ModelRecord, Prepared
from strategies.signal import Signal


def normalised_weights(symbols, weights: dict | None = None) -> dict[str, float]:
    """Each symbol's share of equity x leverage at a full target: ``weights`` normalised to sum to 1, or equal
    shares without them. ``normalised_weights(["A", "B"], {"A": 3, "B": 1})`` is ``{"A": 0.75, "B": 0.25}``."""
    symbols = list(symbols)
    if not weights:
        return {s: 1.0 / len(symbols) for s in symbols}
    total = float(sum(weights[s] for s in symbols))
    return {s: float(weights[s]) / total for s in symbols}


class PortfolioStrategy(TargetPositionStrategy):
    """Base class of every portfolio strategy, shipped or yours: override :meth:`target`.

    The contract (see the module docstring for sizing):

    - ``target()`` is called on every bar's close of the account's clock and returns a target in [-1, 1] per symbol:
      a dict ``{symbol: value}`` (symbols left out keep their standing target) or a sequence in ``self.symbols``
      order. Read only symbols that have a candle at this bar (``self.has_candle(symbol)``); a value for a symbol
      without one is ignored. ``self.feed(symbol)`` is that symbol's data feed: ``self.feed(s).close[0]`` is this
      bar's close, ``[-1]`` the one before (of that symbol's own candles); a positive index is the future, and
      ``lstmbt check-lookahead --symbols ...`` flags it.
    - ``params``, ``prepare(config, data, span_start)`` and ``history_bars(config)`` as for
      :class:`~strategies.base.TargetPositionStrategy`, except that ``prepare`` receives a
      :class:`~backtests.portfolio.data.PortfolioData` (``data.markets[symbol]`` is one symbol's
      :class:`~data_feeds.MarketData`, with its history before ``span_start``).
    """

    is_portfolio = True

    params = (
        ("symbols", ()),
        ("weights", None),        # {symbol: share}, normalised; None: equal
        ("qty_steps", None),      # {symbol: quantity step}
        ("min_qtys", None),       # {symbol: minimum quantity}
    )

    @classmethod
    def check_params(cls, params: dict) -> dict:
        """``params`` if every key is a tunable parameter of this strategy, else a one-line error."""
        own = {"symbols", "weights", "qty_steps", "min_qtys"}
        valid = sorted(set(cls.params._getkeys()) - set(TargetPositionStrategy.params._getkeys()) - own - {"predictor",
                                                                                                          "predictors"})
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for strategy {cls.__name__}; "
                             f"valid: {', '.join(valid) or 'none'}")
        return dict(params)

    def __init__(self):
        super().__init__()
        self.symbols = list(self.p.symbols) or [d._name for d in self.datas]
        if len(self.symbols) != len(self.datas):
            raise ValueError(f"{type(self).__name__}: {len(self.symbols)} symbols for {len(self.datas)} data feeds")
        self._feeds = dict(zip(self.symbols, self.datas))
        self.weights = normalised_weights(self.symbols, self.p.weights)
        self.standing = {s: 0.0 for s in self.symbols}
        self.target_log = {s: array("d") for s in self.symbols}      # standing target of each symbol at each close
        self._now = self.lines.datetime

    # ------------------------------------------------------------------ what a subclass reads

    def feed(self, symbol: str):
        """The data feed of ``symbol``."""
        return self._feeds[symbol]

    def has_candle(self, symbol: str) -> bool:
        """Whether ``symbol`` has its own candle at this bar of the account's clock (False before it starts, in a
        gap of its data and after it ends)."""
        data = self._feeds[symbol]
        return len(data) > 0 and data.datetime[0] == self._now[0]

    def target(self):
        """Targets in [-1, 1] per symbol for this bar's close (a dict, or a sequence in ``self.symbols`` order)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the engine's side

    def prenext(self):
        """A symbol that starts later keeps Backtrader in ``prenext`` until its first candle; the others trade."""
        self._step()

    def nextstart(self):
        self._step()

    def next(self):
        self._step()

    def _getminperstatus(self):
        return bt_minperstatus(self)

    def _step(self) -> None:
        live = [s for s in self.symbols if self.has_candle(s)]
        wanted = self._targets(live) if live else {}
        changed = [s for s in live if s in wanted and wanted[s] != self.standing[s]]
        for s, value in wanted.items():
            if s in live:
                self.standing[s] = value
        for s in self.symbols:
            self.target_log[s].append(self.standing[s])
        self.targets.append(self.standing[self.symbols[0]])
        if not changed or getattr(self.broker, "wiped_out_at", None) is not None:
            return
        orders = []
        equity = self.broker.getvalue()
        p = self.p
        steps, mins = p.qty_steps or {}, p.min_qtys or {}
        for s in changed:
            data = self._feeds[s]
            price = data.close[0]
            size, refused = position_size(self.standing[s] * self.weights[s], equity, price, fraction=p.fraction,
                                          leverage=p.leverage, cost_rate=p.cost_rate, qty_step=steps.get(s, 0.0),
                                          min_qty=mins.get(s, 0.0))
            if refused:
                self.rejected.append((data.datetime[0], s, self.standing[s], price, refused))
            held = self.getposition(data).size
            if size != held:
                orders.append((abs(size) >= abs(held) and (size * held >= 0), data, size))
        for _, data, size in sorted(orders, key=lambda o: o[0]):     # reducing orders first: they free margin
            self.order_target_size(data=data, target=size)

    def _targets(self, live: list[str]) -> dict[str, float]:
        raw = self.target()
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raw = list(raw)
            if len(raw) != len(self.symbols):
                raise ValueError(f"{type(self).__name__}.target() returned {len(raw)} values for "
                                 f"{len(self.symbols)} symbols")
            raw = dict(zip(self.symbols, raw))
        out = {}
        for s, value in raw.items():
            if s not in self._feeds:
                raise ValueError(f"{type(self).__name__}.target() names {s!r}, not one of {', '.join(self.symbols)}")
            value = float(value)
            if not (math.isfinite(value) and -1.0 <= value <= 1.0):
                raise ValueError(f"{type(self).__name__}.target() for {s} is {value!r}; targets are in [-1, 1]")
            out[s] = value
        return out

    def notify_order(self, order):
        """Record refused orders with their symbol."""
        if order.status in (order.Margin, order.Rejected):
            reason = order.info.get("reason") or ("not enough margin" if order.status == order.Margin
                                                  else "rejected by broker")
            self.rejected.append((order.data.datetime[0], order.data._name, order.created.size, order.created.price,
                                  reason))


def bt_minperstatus(strategy) -> int:
    """Backtrader's minimum-period status over every feed (the single-feed shortcut of the base class does not
    apply to several feeds)."""
    dlens = [mp - len(d) for mp, d in zip(strategy._minperiods, strategy.datas)]
    strategy._minperstatus = status = max(dlens)
    return status


class PortfolioFlat(PortfolioStrategy):
    """Never trades: ``flat`` on several symbols."""

    def target(self):
        return {}


class PortfolioBuyAndHold(PortfolioStrategy):
    """Long every symbol from its first close on, at its weight (equal by default): ``buy_hold`` on several
    symbols, the portfolio's buy-and-hold baseline. A symbol that starts later is bought at its first close."""

    def target(self):
        return {s: 1.0 for s in self.symbols}


class LSTMPortfolio(PortfolioStrategy):
    """One walk-forward model per symbol (``lstm_portfolio``), each trading its symbol's share of the account.

    Why one model per symbol rather than one shared model with a symbol input: each symbol's model is exactly the
    single-symbol ``lstm`` strategy's (:class:`~strategies.lstm_strategy.LSTMStrategy`'s ``prepare``: the same
    folds, scalers fitted on that symbol's training bars only, cost-aware labels, decision threshold and cache
    keys), so a portfolio run reuses models trained by single-symbol runs and vice versa, and the lookahead
    guarantees proved for ``lstm`` carry over unchanged. A shared model would need a symbol input and one scaler
    over assets whose price scales differ by 30x (BTC vs ETH); it would also let one symbol's training span leak
    into another's scaler. The price: n trainings instead of one.

    Allocation by signal and confidence: on each symbol's own candle, its model's signal (LONG, SHORT or FLAT under
    the model's tuned threshold) times a size step: ``1`` when the winning class's probability is at least
    ``full_confidence`` (0.6), ``partial`` (0.5) below it. Steps rather than the raw probability, so the position
    is not resized (and charged fees) on every bar's small change of confidence.
    """

    params = (("predictors", None), ("mode", "batched"), ("full_confidence", 0.6), ("partial", 0.5))

    @classmethod
    def history_bars(cls, config) -> int:
        from strategies.lstm_strategy import LSTMStrategy

        return LSTMStrategy.history_bars(config)

    @classmethod
    def prepare(cls, config, data, span_start, progress=None) -> Prepared:
        from strategies.lstm_strategy import LSTMStrategy

        params = cls.check_params(config.params)
        if not 0 < float(params.get("partial", 0.5)) <= 1:
            raise ValueError(f"lstm_portfolio: partial must be in (0, 1], got {params['partial']!r}")
        lstm_params = {"mode": params["mode"]} if "mode" in params else {}
        predictors, records, boundaries, probes = {}, [], [], {}
        for symbol, market in data.markets.items():
            if progress:
                progress(f"{symbol}: its own walk-forward model(s)")
            one = LSTMStrategy.prepare(config.replace(data={"symbol": symbol}, params=lstm_params, symbols=(),
                                                      weights=None),
                                       market, span_start, progress)
            predictors[symbol] = one.params["predictor"]
            probes[symbol] = one.probe
            records += [ModelRecord(f"{symbol} {r.name}", r.weights_sha256, r.data_sha256, r.min_confidence, r.kind,
                                    dict(r.metrics)) for r in one.models]
            boundaries = boundaries or list(one.fold_boundaries)
        return Prepared(params={**params, "predictors": predictors}, models=records, fold_boundaries=boundaries,
                        probe=PortfolioProbe(probes))

    def target(self):
        out = {}
        for s in self.symbols:
            if not self.has_candle(s):
                continue
            predictor = self.p.predictors[s]
            i = len(self.feed(s)) - 1                       # the symbol's own span bar
            signal = predictor.signal(i)
            if signal == Signal.FLAT:
                out[s] = 0.0
                continue
            confidence = float(predictor.probabilities(i)[int(signal) + 1])     # columns short, flat, long
            out[s] = float(signal) * (1.0 if confidence >= self.p.full_confidence else self.p.partial)
        return out


class PortfolioProbe:
    """What the lookahead audit compares of a portfolio strategy besides its targets: each symbol's own probe
    components (``features``, ``scaler``, ``predictor`` of its models), side by side, columns prefixed with the
    symbol. ``components(data, span_start)`` takes a :class:`~backtests.portfolio.data.PortfolioData`."""

    def __init__(self, probes: dict) -> None:
        self.probes = probes            # symbol -> a single-symbol probe (components(market, span_start))

    def components(self, data, span_start) -> dict:
        import pandas as pd

        parts: dict[str, list] = {}
        for symbol, probe in self.probes.items():
            if probe is None:
                continue
            for name, frame in probe.components(data.markets[symbol], span_start).items():
                parts.setdefault(name, []).append(frame.add_prefix(f"{symbol} "))
        return {name: pd.concat(frames, axis=1) for name, frames in parts.items()}


PORTFOLIO_BASELINES = {"buy_hold": PortfolioBuyAndHold, "flat": PortfolioFlat}
"""The single-symbol names that mean their portfolio version when a run has several symbols."""


__all__ = ["LSTMPortfolio", "PORTFOLIO_BASELINES", "PortfolioProbe", "PortfolioBuyAndHold", "PortfolioFlat", "PortfolioStrategy",
           "normalised_weights"]
