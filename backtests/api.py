"""The Python entry point: ``Backtest(data, Strategy, ...).run()``, in the spirit of backtesting.py.

``data`` is a DataFrame of candles (a UTC DatetimeIndex or a ``timestamp`` column, and open, high, low, close,
volume; checked like ``lstmbt backtest --data``), a :class:`~backtests.config.DataConfig` (store or shipped
sample), or a :class:`~data_feeds.MarketData`. ``strategy`` is a TargetPositionStrategy subclass, a registered
name or a ``file.py:Class`` spec::

    from backtests import Backtest, BrokerConfig
    from strategies.examples.rsi_long_short import RsiLongShort

    run = Backtest(candles, RsiLongShort, broker=BrokerConfig(leverage=3), params={"period": 10}).run()
    run.metrics["Sharpe"], run.equity.iloc[-1], len(run.trades)
    run.report("runs/rsi")                 # the same report folder as the CLI writes

A frame is backtested from its first bar (or ``start``) to its last (or ``end``); a strategy that trains on history
(``history_bars``) takes its first bars as that history when ``start`` is not given.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from backtests.config import BacktestConfig, BrokerConfig, DataConfig
from backtests.result import BacktestResult
from data_feeds import DataError, MarketData, find_gaps, parse_span
from data_feeds.timeframes import SUPPORTED, timeframe_delta, timeframe_seconds
from data_feeds.validate import CANDLE_COLUMNS, FUNDING_COLUMNS, check_candles, check_frame

Progress = Callable[[str], None]
FRAME_SOURCE = "DataFrame given to Backtest()"


def frame_candles(frame: pd.DataFrame, what: str = "candles DataFrame") -> pd.DataFrame:
    """A user's candle frame as the engine reads it: UTC DatetimeIndex named ``timestamp``, float64 OHLCV columns,
    checked like a ``--data`` file (increasing, no duplicates or NaN, low <= open, close <= high)."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    df = frame.copy()
    df.columns = [str(c).strip().lower() for c in df.columns]
    if not isinstance(df.index, pd.DatetimeIndex):
        column = next((c for c in ("timestamp", "date", "datetime", "time", "open_time") if c in df.columns), None)
        if column is None:
            raise DataError(f"{what}: needs a DatetimeIndex or a timestamp column")
        ts = df.pop(column)
        try:
            ts = pd.to_datetime(ts.astype("int64"), unit="ms", utc=True) if pd.api.types.is_numeric_dtype(ts) \
                else pd.to_datetime(ts, utc=True, format="ISO8601")
        except (ValueError, TypeError, OverflowError) as exc:
            raise DataError(f"{what}: unreadable timestamps ({type(exc).__name__})") from None
        df.index = pd.DatetimeIndex(ts)
    index = df.index if df.index.tz is not None else df.index.tz_localize("UTC")
    df.index = pd.DatetimeIndex(index.tz_convert("UTC"), name="timestamp")
    missing = [c for c in CANDLE_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {', '.join(missing)}; expected {', '.join(CANDLE_COLUMNS)}")
    df = df[list(CANDLE_COLUMNS)].apply(pd.to_numeric, errors="coerce").astype("float64")
    check_candles(df, what)
    return df


def infer_timeframe(index: pd.DatetimeIndex, what: str = "candles DataFrame") -> str:
    """The timeframe string of the most common step between bars: 3,600 s apart is ``"1h"``."""
    if len(index) < 3:
        raise DataError(f"{what}: only {len(index)} candle(s); need at least 3")
    step = pd.Series(index[1:] - index[:-1]).mode().iloc[0].total_seconds()
    for tf in SUPPORTED:
        if timeframe_seconds(tf) == step:
            return tf
    raise DataError(f"{what}: bars are {step:g} s apart, not one of the timeframes {', '.join(SUPPORTED)}")


@dataclass
class BacktestRun:
    """What :meth:`Backtest.run` returns: the :class:`BacktestResult` (its fields are reachable directly,
    ``run.equity``, ``run.trades``, ``run.fills`` ...), its metrics, and the config it ran with."""

    result: BacktestResult
    config: BacktestConfig
    metrics: pd.Series = field(repr=False)
    market: MarketData | None = field(default=None, repr=False)     # the data given in memory (a DataFrame)

    def __getattr__(self, name: str):
        if name in ("result", "config", "metrics", "market"):          # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.result, name)

    def report(self, folder: str | os.PathLike, *, baselines: list[BacktestResult] = ()) -> Path:
        """Write the report folder (``report.html``, ``metrics.json``, CSVs, charts, ``data/``, ``manifest.json``)
        into ``folder``, as ``lstmbt backtest`` does (with the report's 1x buy-and-hold run on the same data unless
        ``baselines`` hold one); returns ``report.html``'s path. ``lstmbt report FOLDER`` re-renders it and
        ``lstmbt report FOLDER --rerun`` runs it again: a run on a DataFrame keeps its candles (and funding) in
        ``FOLDER/input/`` with their SHA-256 in the manifest, and the rerun reads them from there."""
        from backtests.manifest import build_manifest
        from backtests.persist import write_run_folder
        from backtests.session import reference_run
        from strategies.registry import get_strategy

        folder = Path(folder)
        baselines = list(baselines)
        names = [self.config.strategy, *(b.name for b in baselines)]
        reference = reference_run(self.config, names, self.market)
        if reference is not None:
            baselines.append(reference)
        rerunnable = []                 # baselines the rerun can run again by name
        for b in baselines:
            if b is not reference and b.name != self.config.strategy:
                try:
                    get_strategy(b.name)
                    rerunnable.append(b.name)
                except ValueError:
                    pass
        config = self.config.replace(baselines=tuple(rerunnable))
        argv = [sys.argv[0] if sys.argv else "python", f"Backtest(..., {self.config.strategy!r}).run()"]
        manifest = build_manifest(config, self.result, baselines, argv)
        if self.market is not None:
            manifest["input"] = save_input(folder, self.market)
        return write_run_folder(folder, self.result, baselines, manifest)


INPUT_DIR = "input"
INPUT_FRAMES = ("candles", "funding", "mark")


def save_input(folder: str | os.PathLike, market: MarketData) -> dict:
    """Save the market data a run was given in memory (a DataFrame) into ``folder/input/*.parquet``; returns the
    manifest's ``input`` record: each file's relative path, rows and SHA-256, and the market's names."""
    import hashlib

    out = Path(folder) / INPUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    record = {"exchange": market.exchange, "symbol": market.symbol, "timeframe": market.timeframe,
              "source": market.source, "files": {}}
    for kind in INPUT_FRAMES:
        frame = getattr(market, kind)
        if frame is None:
            continue
        path = out / f"{kind}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp)
        os.replace(tmp, path)
        record["files"][kind] = {"file": f"{INPUT_DIR}/{kind}.parquet", "rows": len(frame),
                                 "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return record


def load_input(folder: str | os.PathLike, record: dict) -> MarketData:
    """The :class:`MarketData` that :func:`save_input` saved in ``folder`` (a run folder); raises DataError when
    a file is missing or its SHA-256 is not the manifest's."""
    import hashlib

    from backtests.persist import inside

    frames = {}
    files = record.get("files") if isinstance(record, dict) else None
    if not isinstance(files, dict) or "candles" not in files:
        raise DataError(f"{folder}: the manifest's 'input' record names no saved candles")
    for kind in INPUT_FRAMES:
        entry = files.get(kind)
        if entry is None:
            continue
        path = inside(folder, entry.get("file"), f"input {kind}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: the run's saved {kind} cannot be read ({exc.strerror or exc})") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry.get("sha256"):
            raise DataError(f"{path}: sha256 {digest[:12]}... is not the manifest's {str(entry.get('sha256'))[:12]}...; "
                            f"the run's saved {kind} changed, so the run cannot be reproduced")
        try:
            frames[kind] = pd.read_parquet(path)
        except Exception as exc:            # pyarrow raises several types on a damaged file
            raise DataError(f"{path}: unreadable parquet ({type(exc).__name__})") from None
    candles = frames["candles"]
    funding = frames.get("funding")
    if funding is None:
        funding = pd.DataFrame({"funding_rate": pd.Series(dtype="float64")},
                               index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    timeframe = str(record.get("timeframe"))
    return MarketData(str(record.get("exchange")), str(record.get("symbol")), timeframe, candles, funding,
                      frames.get("mark"), str(record.get("source", FRAME_SOURCE)), find_gaps(candles.index, timeframe))


class Backtest:
    """One strategy on one market, from Python. See the module docstring for ``data`` and ``strategy``.

    ``broker``: a :class:`BrokerConfig` or a dict of its fields (``{"leverage": 3}``: initial margin is notional / 3).
    ``params``: the strategy's parameters (its ``params`` tuple); ``model``: the ``[model]`` table for model-driven
    strategies. ``symbol``/``exchange`` name a DataFrame's market (its quantity step and the report);
    ``timeframe`` is inferred from a frame's bar spacing when not given; ``funding``: a frame of funding settlements
    (``funding_rate`` per interval, UTC index) for a DataFrame (default none); ``start``/``end`` cut the span.
    """

    def __init__(self, data, strategy, *, broker: BrokerConfig | dict | None = None, params: dict | None = None,
                 model: dict | None = None, symbol: str = "BTC/USDT:USDT", exchange: str = "binanceusdm",
                 timeframe: str | None = None, start: str | None = None, end: str | None = None,
                 funding: pd.DataFrame | None = None, fraction: float = 0.99, seed: int = 42,
                 cache_dir: str | None = None, name: str = "backtest"):
        from strategies.loader import spec_of
        from strategies.registry import get_strategy

        self.strategy = strategy if isinstance(strategy, type) else get_strategy(strategy)
        spec = spec_of(strategy) if isinstance(strategy, type) else strategy
        if isinstance(broker, dict):
            broker = BrokerConfig(**broker)
        self.market: MarketData | None = None
        if isinstance(data, DataConfig):
            data_config = data
        elif isinstance(data, (pd.DataFrame, MarketData)):
            history = self.strategy.history_bars(BacktestConfig(strategy=spec, model=dict(model or {}), seed=seed))
            self.market, data_config = self._market(data, symbol, exchange, timeframe, start, end, funding, history)
        else:
            raise TypeError(f"data must be a DataFrame of candles, a DataConfig or MarketData, "
                            f"got {type(data).__name__}")
        self.config = BacktestConfig(name=name, strategy=spec, data=data_config, broker=broker or BrokerConfig(),
                                     fraction=fraction, params=dict(params or {}), model=dict(model or {}),
                                     seed=seed, cache_dir=cache_dir)

    @staticmethod
    def _market(data, symbol, exchange, timeframe, start, end, funding, history: int) -> tuple[MarketData, DataConfig]:
        if isinstance(data, MarketData):
            market = data
        else:
            candles = frame_candles(data)
            timeframe = timeframe or infer_timeframe(candles.index)
            if funding is None:
                funding = pd.DataFrame({"funding_rate": pd.Series(dtype="float64")},
                                       index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
            else:
                check_frame(funding, FUNDING_COLUMNS, "funding DataFrame")
            market = MarketData(exchange, symbol, timeframe, candles, funding, None, FRAME_SOURCE,
                                find_gaps(candles.index, timeframe))
        index = market.candles.index
        if start is None:              # the first bars are the strategy's history, the rest is traded
            start = index[min(history, max(len(index) - 3, 0))].isoformat()
        last = index[-1] + timeframe_delta(market.timeframe) - pd.Timedelta(microseconds=1)
        end = end or last.isoformat()
        parse_span(start, end)
        return market, DataConfig(exchange=market.exchange, symbol=market.symbol, timeframe=market.timeframe,
                                  start=str(start), end=str(end))

    def run(self, progress: Progress | None = None) -> BacktestRun:
        """Run the backtest; returns a :class:`BacktestRun`."""
        from backtests.engine import run_backtest
        from reports.metrics import result_metrics

        result = run_backtest(self.config, strategy=self.strategy, market=self.market, progress=progress)
        return BacktestRun(result=result, config=self.config, metrics=result_metrics(result), market=self.market)


__all__ = ["Backtest", "BacktestRun", "frame_candles", "infer_timeframe", "load_input", "save_input"]
