"""One public way in: :func:`load` for candles, funding and mark prices, from the store or the shipped sample.

Every frame leaves here validated (UTC index, sorted, unique, no NaN, OHLC sane) and trimmed to the
requested span. A span is ``[start, end]``: a date-only ``end`` such as ``"2024-06-30"`` includes that
whole day. Where a timeframe is not stored but a finer one is (``4h`` from ``1h``), complete bars are
resampled from the finer one.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data_feeds.dates import format_date, parse_date
from data_feeds.errors import DataError, MissingData
from data_feeds.store import Store, read_parquet, timestamp_index
from data_feeds.symbols import check_symbol, symbol_to_filename
from data_feeds.timeframes import SUPPORTED, timeframe_delta, timeframe_seconds
from data_feeds.validate import CANDLE_COLUMNS, check_candles, check_frame, find_gaps

SAMPLE_DIR = Path(__file__).parent / "sample"
SAMPLE_EXCHANGE = "binanceusdm"
WEEK_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")     # a Monday: weekly bars open on Mondays


def parse_time(value: str | pd.Timestamp, *, is_end: bool = False) -> pd.Timestamp:
    """UTC timestamp from ``"2024-01-01"`` or ``"2024-01-01T12:00"`` only (:func:`data_feeds.dates.parse_date`:
    ``01/02/2024`` is refused). A date-only end moves to the next midnight (exclusive), so ``end="2024-06-30"``
    covers all of 30 June."""
    return parse_date(value, is_end=is_end, what="end" if is_end else "start")


def parse_span(start, end) -> tuple[pd.Timestamp, pd.Timestamp]:
    """``(start, end_exclusive)``; raises DataError when the span is empty or reversed."""
    t0, t1 = parse_time(start), parse_time(end, is_end=True)
    if t0 >= t1:
        raise DataError(f"empty or reversed date range: start {start} is not before end {end}")
    return t0, t1


@dataclass
class MarketData:
    """Everything a backtest needs for one symbol: candles, funding settlements and mark-price candles.

    ``funding`` has one row per settlement (``funding_rate`` per interval, 0.0001 = 0.01 %); ``mark`` may be
    None where the source has no mark prices. ``gaps`` lists missing candles (see :func:`find_gaps`).
    """

    exchange: str
    symbol: str
    timeframe: str
    candles: pd.DataFrame
    funding: pd.DataFrame
    mark: pd.DataFrame | None
    source: str
    gaps: pd.DataFrame = field(default_factory=pd.DataFrame)

    def slice(self, start: pd.Timestamp, end_exclusive: pd.Timestamp) -> "MarketData":
        """The same market data limited to bars with open time in ``[start, end_exclusive)``."""
        def cut(df):
            return None if df is None else df[(df.index >= start) & (df.index < end_exclusive)]
        candles = cut(self.candles)
        return MarketData(self.exchange, self.symbol, self.timeframe, candles, cut(self.funding), cut(self.mark),
                          self.source, find_gaps(candles.index, self.timeframe))


# ---------------------------------------------------------------- reading raw frames

def read_csv_frame(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """CSV (optionally gzipped) with a ``timestamp`` column in epoch milliseconds or ISO text."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    for alias in ("date", "datetime", "time", "open_time"):
        if "timestamp" not in df.columns and alias in df.columns:
            df = df.rename(columns={alias: "timestamp"})
    if "timestamp" not in df.columns:
        raise DataError(f"{path}: no timestamp column; expected timestamp,{','.join(columns)}")
    df.index = timestamp_index(df.pop("timestamp"), path)
    for col in columns:
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def read_user_file(path: str | os.PathLike, columns: tuple[str, ...] = CANDLE_COLUMNS) -> pd.DataFrame:
    """A user's own CSV (``.csv``/``.csv.gz``) or Parquet file with a timestamp column and ``columns``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}")
    if p.suffix == ".parquet":
        df = read_parquet(p)
        for col in columns:   # text or other non-numeric values become NaN, refused by the checks that follow
            if col in df.columns and not pd.api.types.is_float_dtype(df[col]):
                df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    else:
        df = read_csv_frame(p, columns)
    return df


def _sample_path(symbol: str, suffix: str) -> Path:
    return SAMPLE_DIR / f"{SAMPLE_EXCHANGE}_{symbol_to_filename(symbol)}_{suffix}.csv.gz"


def _sample_symbols() -> list[str]:
    names = {p.name.split("_")[1] for p in SAMPLE_DIR.glob(f"{SAMPLE_EXCHANGE}_*_funding_8h.csv.gz")}
    return sorted(n.replace("-", "/", 1).replace("-", ":", 1) for n in names)


def _sampled(exchange: str, symbol: str, timeframe: str, kind: str) -> pd.DataFrame | None:
    """The shipped sample's frame for exactly this timeframe, or None."""
    if exchange != SAMPLE_EXCHANGE:
        return None
    suffix = {"candles": timeframe, "mark": f"mark_{timeframe}", "funding": "funding_8h"}[kind]
    path = _sample_path(symbol, suffix)
    if not path.exists():
        return None
    columns = ("funding_rate",) if kind == "funding" else CANDLE_COLUMNS
    return read_csv_frame(path, columns)


def resample_candles(df: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """OHLCV of ``timeframe`` from finer candles, keeping only bars whose every sub-bar is present."""
    rule = timeframe_delta(timeframe)
    # bars are cut on the UTC epoch grid as exchanges cut them (4h: 00:00, 04:00 ...; 1d: midnight), except
    # weekly bars, which open on Monday 00:00 UTC as on Binance and Bybit (the epoch fell on a Thursday)
    origin = WEEK_ORIGIN if timeframe == "1w" else "epoch"
    agg = df.resample(rule, label="left", closed="left", origin=origin).agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    counts = df["close"].resample(rule, label="left", closed="left", origin=origin).count()
    finer = int(round((df.index[1] - df.index[0]) / pd.Timedelta(seconds=1))) if len(df) > 1 else 0
    expected = timeframe_seconds(timeframe) // max(finer, 1)
    return agg[counts == expected]


def _candles_any_timeframe(exchange, symbol, timeframe, kind, store) -> tuple[pd.DataFrame | None, str]:
    """(frame, where it came from): the exact timeframe, else resampled from the coarsest finer one that divides
    it. What the user downloaded into the store (exact, then finer) wins over the shipped sample (exact, then finer)."""
    target = timeframe_seconds(timeframe)
    finer = sorted((tf for tf in SUPPORTED if timeframe_seconds(tf) < target and target % timeframe_seconds(tf) == 0),
                   key=timeframe_seconds, reverse=True)
    sources = ((lambda tf: store.read(exchange, symbol, tf, kind), f"store {store.root}"),
               (lambda tf: _sampled(exchange, symbol, tf, kind), "shipped sample"))
    for read, where in sources:
        direct = read(timeframe)
        if direct is not None:
            return direct, f"{where} ({timeframe})"
        for tf in finer:
            raw = read(tf)
            if raw is not None and len(raw) > 1:
                check_candles(raw, f"{exchange} {symbol} {tf} {kind}")
                return resample_candles(raw, timeframe), f"{where} ({timeframe} resampled from {tf})"
    return None, ""


# ---------------------------------------------------------------- the public entry points

def load(exchange: str, symbol: str, timeframe: str, start, end, *, kind: str = "candles",
         store_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Validated frame of one kind ("candles", "mark" or "funding") for ``[start, end]``; ``frame.attrs["source"]``
    says where it came from (the store or the shipped sample, and any resampling).

    >>> df = load("binanceusdm", "BTC/USDT:USDT", "1h", "2024-01-01", "2024-01-31")   # doctest: +SKIP
    >>> len(df)   # 31 days of hourly bars
    744
    """
    check_symbol(symbol)
    timeframe_seconds(timeframe)
    t0, t1 = parse_span(start, end)
    store = Store(store_dir)
    if kind == "funding":
        raw, where = store.read(exchange, symbol, timeframe, "funding"), f"store {store.root}"
        if raw is None:
            raw, where = _sampled(exchange, symbol, timeframe, "funding"), "shipped sample"
    else:
        raw, where = _candles_any_timeframe(exchange, symbol, timeframe, kind, store)
        if raw is not None and where.startswith("store") and not _covers(raw, t0, t1, timeframe):
            sample, sampled = _candles_any_timeframe(exchange, symbol, timeframe, kind, _NO_STORE)
            if sample is not None and _covers(sample, t0, t1, timeframe):
                span = f"{raw.index[0]:%Y-%m-%d %H:%M} .. {raw.index[-1]:%Y-%m-%d %H:%M}" if len(raw) else "nothing"
                raw, where = sample, f"{sampled}; the store holds only {span} of it"
    if raw is None:
        raise MissingData(missing_data_message(exchange, symbol, timeframe, kind, t0, t1))
    what = f"{exchange} {symbol} {timeframe} {kind}"
    if kind == "funding":
        check_frame(raw, ("funding_rate",), what)
    else:
        check_candles(raw, what)
    out = _trim(raw, t0, t1, what)
    out.attrs["source"] = f"{exchange} {where}"
    out.attrs["covers"] = [raw.index[0].isoformat(), raw.index[-1].isoformat()]
    return out


class _EmptyStore:
    """A store with nothing in it: the shipped sample alone."""

    root = "-"

    def read(self, *args, **kwargs):
        return None


_NO_STORE = _EmptyStore()


def _covers(df: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp, timeframe: str) -> bool:
    """Whether ``df`` has bars from the span's first bar through its last (a partial download does not)."""
    bar = timeframe_delta(timeframe)
    return len(df) > 0 and df.index[0] <= t0 + bar and df.index[-1] >= t1 - 2 * bar


def perpetual_symbol(symbol: str) -> str:
    """The USDT-M perpetual's ccxt symbol for a spot-style one: ``"BTC/USDT"`` -> ``"BTC/USDT:USDT"``; a symbol
    that already names its settle currency comes back unchanged."""
    if ":" in symbol or "/" not in symbol:
        return symbol
    return f"{symbol}:{symbol.split('/', 1)[1]}"


def missing_data_message(exchange: str, symbol: str, timeframe: str, kind: str, t0: pd.Timestamp,
                         t1: pd.Timestamp) -> str:
    """One line saying what is missing and a download command that works when pasted into a shell: dates as
    ``YYYY-MM-DD``, every value shell-quoted, and the perpetual's symbol when a spot-style one was given (lstmbt
    trades futures: ``BTC/USDT`` -> ``BTC/USDT:USDT``)."""
    known = ", ".join(_sample_symbols())
    perp = perpetual_symbol(symbol)
    hint = f"; {symbol} is a spot symbol, the perpetual is {perp}" if perp != symbol else ""
    last_day = t1 - pd.Timedelta(days=1) if t1 == t1.normalize() else t1
    command = " ".join(shlex.quote(part) for part in (
        "lstmbt", "download", "--exchange", exchange, "--symbol", perp, "--timeframe", timeframe,
        "--start", format_date(t0.normalize()), "--end", format_date(last_day.normalize())))
    return (f"no {kind} data for {symbol} {timeframe} on {exchange}{hint} (shipped: {known} on {SAMPLE_EXCHANGE}); "
            f"fetch it with: {command}")


def check_coverage(index: pd.DatetimeIndex, t0: pd.Timestamp, t1: pd.Timestamp, timeframe: str, what: str,
                   covers=None) -> None:
    """Refuse a span that reaches past the data instead of silently clamping it to what is there.

    The first bar must open at ``t0`` or within one bar after it, and the last bar must be the one that ends at
    ``t1`` (within one bar): BTC 1h data ending 2025-12-31 23:00 covers ``--end 2025-12-31`` but not
    ``--end 2026-03-31``. ``index``: the bars loaded for the span; ``covers``: (first, last) bar of the whole
    source (ISO strings or timestamps), for the message. Raises DataError naming what the data covers and the span to ask for instead.
    """
    if not len(index):
        return
    bar = timeframe_delta(timeframe)
    first, last = index[0], index[-1]
    covers = [pd.Timestamp(t) for t in covers] if covers else (first, last)
    late_start, early_end = first > t0 + bar, last + bar < t1 - bar
    if late_start or early_end:
        start_at = first.ceil("D") if late_start else t0
        last_day = (last + bar).floor("D") - pd.Timedelta(days=1)     # the last whole day the data holds
        if not early_end:
            ask_end = format_date(t1 - pd.Timedelta(days=1) if t1 == t1.normalize() else t1)
        else:
            ask_end = format_date(last_day if last_day >= start_at.normalize() else last + bar)
        if start_at >= last + bar:
            start_at = first
        ask_start = format_date(start_at)
        side = "starts after" if late_start and not early_end else "ends before" if early_end and not late_start \
            else "does not cover"
        raise DataError(f"{what}: the data {side} the requested span {format_date(t0)} .. "
                        f"{format_date(t1 - pd.Timedelta(days=1)) if t1 == t1.normalize() else format_date(t1)} "
                        f"(it covers {covers[0]:%Y-%m-%d %H:%M} .. {covers[1]:%Y-%m-%d %H:%M} UTC); use --start {ask_start} "
                        f"--end {ask_end}, or download the missing data")


def _trim(df: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp, what: str) -> pd.DataFrame:
    out = df[(df.index >= t0) & (df.index < t1)]
    if out.empty:
        first, last = (df.index[0], df.index[-1]) if len(df) else ("-", "-")
        raise MissingData(f"{what}: no rows in {t0:%Y-%m-%d %H:%M} .. {t1:%Y-%m-%d %H:%M}; data covers {first} .. {last}")
    return out


def load_market(exchange: str, symbol: str, timeframe: str, start, end, *, data_path: str | os.PathLike | None = None,
                funding_path: str | os.PathLike | None = None, mark_path: str | os.PathLike | None = None,
                store_dir: str | os.PathLike | None = None, check_end: bool = True) -> MarketData:
    """Candles, funding and mark prices for one symbol over ``[start, end]``.

    With ``data_path`` the candles come from the user's file (CSV or Parquet with timestamp, open, high, low,
    close, volume); funding then comes from ``funding_path`` if given, else the store/sample for the symbol if
    any, else none (zero funding, named in the run's notices). Mark prices come from ``mark_path`` (a user's
    mark candles, of the run's timeframe or finer: finer ones are resampled and also price the funding
    settlements inside long bars), else the store/sample; None when not available.
    A span that runs past the data's last bar is refused (:func:`check_coverage`), never silently cut;
    ``check_end=False`` leaves that to the caller (a comparison checks each cell's range). Whether the data
    starts early enough is the caller's check too, since only it knows how much of the span is history.
    """
    t0, t1 = parse_span(start, end)
    if data_path is not None:
        raw = read_user_file(data_path)
        what = str(data_path)
        check_candles(raw, what)
        candles = _trim(raw, t0, t1, what)
        candles.attrs["covers"] = [raw.index[0].isoformat(), raw.index[-1].isoformat()]
        source = str(Path(data_path).resolve())
    else:
        candles = load(exchange, symbol, timeframe, start, end, store_dir=store_dir)
        source = candles.attrs.get("source", exchange)
    _check_spacing(candles, timeframe, source)
    if check_end:
        check_coverage(candles.index, candles.index[0], t1, timeframe, f"{symbol} {timeframe} from {source}",
                       candles.attrs.get("covers"))
    funding = _optional(lambda: load(exchange, symbol, timeframe, t0 - pd.Timedelta(days=1), end, kind="funding",
                                     store_dir=store_dir))
    if funding_path is not None:
        raw = read_user_file(funding_path, ("funding_rate",))
        check_frame(raw, ("funding_rate",), str(funding_path))
        funding = raw
    if funding is None:
        funding = pd.DataFrame({"funding_rate": pd.Series(dtype="float64")},
                               index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))
    mark = None if data_path is not None else _optional(
        lambda: load(exchange, symbol, timeframe, start, end, kind="mark", store_dir=store_dir))
    user_mark = None
    if mark_path is not None:
        user_mark = read_user_mark(mark_path)
        mark = _mark_for_timeframe(user_mark, timeframe, str(mark_path))
        mark = mark[(mark.index >= t0) & (mark.index < t1)]
    # keep the last settlement before the span too: its rate is known at the first bar (a feature may use it);
    # the feed books only settlements inside the span's bars
    before = funding.index[funding.index < t0]
    first = before[-1] if len(before) else t0
    funding = funding[(funding.index >= first) & (funding.index < t1)]
    if data_path is None or user_mark is not None:
        funding = with_settlement_marks(funding, exchange, symbol, timeframe, store_dir, mark=user_mark,
                                        stored=data_path is None)
    return MarketData(exchange, symbol, timeframe, candles, funding, mark, source, find_gaps(candles.index, timeframe))


def read_user_mark(path: str | os.PathLike) -> pd.DataFrame:
    """A user's mark-price candles (timestamp, open, high, low, close; volume optional, 0 when absent), checked."""
    raw = read_user_file(path, ("open", "high", "low", "close", "volume"))
    if "volume" not in raw.columns:
        raw["volume"] = 0.0
    check_candles(raw, str(path))
    return raw


def _mark_for_timeframe(mark: pd.DataFrame, timeframe: str, what: str) -> pd.DataFrame:
    """Mark candles of ``timeframe``: as given, or resampled from finer ones; coarser ones are refused."""
    if len(mark) < 2:
        return mark
    step = pd.Series(mark.index[1:] - mark.index[:-1]).mode().iloc[0]
    want = timeframe_delta(timeframe)
    if step == want:
        return mark
    if step < want and want % step == pd.Timedelta(0):
        return resample_candles(mark, timeframe)
    raise DataError(f"{what}: mark candles are {step} apart; need {timeframe} or a finer step that divides it")


def with_settlement_marks(funding: pd.DataFrame, exchange: str, symbol: str, timeframe: str,
                          store_dir=None, mark: pd.DataFrame | None = None, stored: bool = True) -> pd.DataFrame:
    """``funding`` with a ``mark_price`` column: the mark price at each settlement instant, NaN where unknown.

    Needed only on bars longer than 1h, where settlements fall inside bars: the close of the mark candle that
    ends at the instant, from ``mark`` (a user's mark file) or the finest stored or shipped mark candles of 1h or
    less (the 08:00 settlement inside a 1d bar: the close of the 07:00-08:00 mark candle, the same price a 1h
    run uses at the 08:00 bar's open). Shorter bars already have a mark candle ending at every settlement.
    """
    if funding.empty or timeframe_seconds(timeframe) <= 3600 or "mark_price" in funding.columns:
        return funding
    sources = [] if mark is None else [mark]
    store = Store(store_dir)
    for tf in ("1h", "15m", "5m", "1m") if stored else ():
        try:
            frame = store.read(exchange, symbol, tf, "mark")
            frame = frame if frame is not None else _sampled(exchange, symbol, tf, "mark")
        except DataError:
            frame = None
        if frame is not None and len(frame) > 1:
            sources.append(frame)
    out = funding.copy()
    prices = pd.Series(float("nan"), index=funding.index)
    for frame in sources:
        step = pd.Series(frame.index[1:] - frame.index[:-1]).mode().iloc[0]
        ends = pd.Series(frame["close"].to_numpy(dtype="float64"), index=frame.index + step)
        ends = ends[~ends.index.duplicated()]
        prices = prices.fillna(ends.reindex(funding.index))
    out["mark_price"] = prices.to_numpy(dtype="float64")
    return out


def _optional(fn):
    """``fn()``, or None when its data is missing; a corrupt or invalid file still raises (exit 2 naming it)."""
    try:
        return fn()
    except MissingData:
        return None


def _check_spacing(candles: pd.DataFrame, timeframe: str, what: str) -> None:
    """A user's file must hold bars of the timeframe asked for: the most common step must equal it."""
    if len(candles) < 3:
        raise DataError(f"{what}: only {len(candles)} candle(s) in the requested span; need at least 3")
    step = pd.Series(candles.index[1:] - candles.index[:-1]).mode().iloc[0]
    if step != timeframe_delta(timeframe):
        raise DataError(f"{what}: candles are {step} apart but --timeframe is {timeframe}")
