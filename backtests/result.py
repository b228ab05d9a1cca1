"""The one plain object between the engine and the reports: :class:`BacktestResult`.

It holds only pandas objects, numbers and plain dicts (no Backtrader, no torch), so reports,
notebooks and comparison grids can read it, pickle it and send it between processes.

Time convention: every series is indexed by the bar's **open** time (UTC). ``equity`` and
``position`` are the values at that bar's **close**; a fill decided on bar t's close is stamped with
bar t+1's open time, the moment it executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

FILL_COLUMNS = ["time", "size", "price", "notional", "fee", "slippage", "kind", "liquidity"]
TRADE_COLUMNS = ["entry_time", "exit_time", "direction", "size", "entry_price", "exit_price", "bars",
                 "price_pnl", "fees", "funding", "pnl", "return_pct", "status"]
REJECT_COLUMNS = ["time", "size", "price", "reason"]
LIQUIDATION_COLUMNS = ["time", "symbol", "size", "price", "fee", "loss"]


@dataclass
class PortfolioBook:
    """What a multi-symbol run adds to its :class:`BacktestResult` (``result.portfolio``); plain pandas only.

    Every frame shares the account's bar index (bar open times, UTC) and has one column per symbol, in ``symbols``
    order. A symbol without a candle at a bar (it starts later, or has a gap) is NaN there in ``prices`` and
    ``notional``, never forward-filled; ``coverage`` names those spans.

    - ``symbols``: the traded symbols (ccxt unified, ``"BTC/USDT:USDT"``); ``margin_mode``: ``"cross"`` or
      ``"isolated"``; ``weights``: each symbol's share of equity x leverage at a full target of 1.
    - ``prices``: symbol -> OHLCV frame (last-price candles) on the account index.
    - ``position``: signed contracts held at each bar's close; ``notional``: signed position value at the mark close
      (USDT); ``target``: the strategy's target per symbol in [-1, 1], decided at each close.
    - ``pnl``: per-bar change of the account's equity caused by each symbol (price, fees, slippage, funding,
      liquidation; USDT); ``pnl.sum(axis=1)`` equals ``equity.diff()`` (the first bar: equity - initial cash).
    - ``attribution``: index = symbols, columns = ``ATTRIBUTION_TERMS`` (backtests.attribution), USDT; the whole
      table sums to final equity - initial cash.
    - ``margin_balance``: the account's margin balance (wallet + unrealised PnL at mark) at each close;
      ``maintenance``: maintenance margin per symbol at each close (USDT); ``margin_ratio``: in cross,
      ``maintenance.sum(axis=1) / margin_balance``; in isolated, the highest of each position's own ratio
      (maintenance / (isolated margin + unrealised PnL)). Liquidation happens when it reaches 1.
    - ``liquidations``: one row per liquidation (``LIQUIDATION_COLUMNS``; ``loss`` = USDT the account lost to it,
      price move from entry plus fee).
    - ``coverage``: symbol -> {"first": Timestamp, "last": Timestamp, "missing_bars": int,
      "gaps": [[start, end], ...]} over the account's span.
    """

    symbols: list
    margin_mode: str
    weights: dict
    prices: dict
    position: pd.DataFrame
    notional: pd.DataFrame
    target: pd.DataFrame
    pnl: pd.DataFrame
    attribution: pd.DataFrame
    margin_balance: pd.Series
    maintenance: pd.DataFrame
    margin_ratio: pd.Series
    liquidations: pd.DataFrame
    coverage: dict


@dataclass
class BacktestResult:
    """What one backtest produced.

    - ``equity``: account value in quote currency (USDT) at each bar's close = cash + margin + unrealised PnL.
    - ``position``: signed contracts (base units, 0.5 = long half a BTC) held at each bar's close.
    - ``target``: the strategy's target position decided at each bar's close, in [-1, 1] (Signal values).
    - ``prices``: the OHLCV candles of the backtested span.
    - ``fills``: one row per execution (``FILL_COLUMNS``); ``size`` signed (+ buy, - sell), ``fee`` and
      ``slippage`` in USDT, ``kind`` "market" or "liquidation", ``liquidity`` "taker" or "maker".
    - ``trades``: round trips from flat to flat or to a flip (``TRADE_COLUMNS``); ``pnl`` is net of fees and funding;
      a position still open at the end is one row with ``status="open"``, valued at the last close.
    - ``funding``: funding paid at each bar in USDT (positive = paid, negative = received).
    - ``fees``: trading fees paid at each bar in USDT.
    - ``rejected``: orders the broker refused (``REJECT_COLUMNS``), e.g. not enough margin.
    - ``config``: the run's configuration as plain data; ``data_span``: start, end, rows, source, gaps, sha256.
    - ``predictions``: for model-driven strategies, class probabilities per bar (columns short, flat, long).
    - ``attribution``: PnL by source in USDT (price, fees_taker, fees_maker, slippage, funding, liquidation), summing
      exactly to final equity - starting cash (see :mod:`backtests.attribution`).
    - ``models``: one plain dict per trained model, in fold order (``ModelRecord.as_dict()``: name,
      weights_sha256, data_sha256, min_confidence, kind, metrics); empty for strategies without a model.
    - ``fold_boundaries``: where each walk-forward model's test span starts (UTC timestamps).
    - ``source``: the strategy class and its source file with that file's sha256 (``strategy_source``).
    - ``extras``: anything else a caller attaches (not written by the engine).
    - ``portfolio``: for multi-symbol runs, the per-symbol book (:class:`PortfolioBook`); then ``symbol`` joins the
      symbols with ``+``, ``equity``/``funding``/``fees`` are the account's, ``fills``/``trades``/``rejected`` gain a
      ``symbol`` column, and ``position``/``target``/``prices`` hold the first symbol's (use the book). None for a
      single-symbol run.
    """

    name: str
    strategy: str
    exchange: str
    symbol: str
    timeframe: str
    initial_cash: float
    equity: pd.Series
    position: pd.Series
    target: pd.Series
    prices: pd.DataFrame
    fills: pd.DataFrame
    trades: pd.DataFrame
    funding: pd.Series
    fees: pd.Series
    rejected: pd.DataFrame
    config: dict
    data_span: dict
    predictions: pd.DataFrame | None = None
    attribution: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    models: list = field(default_factory=list)
    fold_boundaries: list = field(default_factory=list)
    source: dict = field(default_factory=dict)
    portfolio: PortfolioBook | None = None

    @property
    def fees_paid(self) -> float:
        """Total trading fees in USDT."""
        return float(self.fees.sum())

    @property
    def funding_paid(self) -> float:
        """Net funding paid in USDT (negative when the strategy received more than it paid)."""
        return float(self.funding.sum())

    @property
    def final_equity(self) -> float:
        """Account value at the last bar's close."""
        return float(self.equity.iloc[-1])
