"""The comparison grid as plain data: named date ranges, cells (strategy x range x symbol) and their outcomes.

Pure functions, no I/O: ``parse_ranges("bull=2020-10-01:2021-04-15,bear=2022-04-01:2022-12-31")`` gives two
:class:`DateRange` objects; ``rolling_ranges("2022-01-01", "2022-12-31", "6M")`` cuts a span into consecutive
windows; :func:`build_cells` crosses them with strategies and symbols in a fixed order (range, then symbol, then
strategy), which is the row order of every comparison table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from backtests.config import ConfigError
from data_feeds import parse_span, parse_time

if TYPE_CHECKING:
    from backtests.result import BacktestResult

_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?"
_RANGE = re.compile(rf"^(?:(?P<name>[^=]+)=)?(?P<start>{_DATE}):(?P<end>{_DATE})$")
_WINDOW = re.compile(r"^(?P<count>[1-9]\d*)(?P<unit>[DWMYdwmy])$")
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class DateRange:
    """A named span of the backtest: ``start`` and ``end`` as given (``end`` inclusive: "2022-12-31" covers the
    whole day), e.g. ``DateRange("bear", "2022-04-01", "2022-12-31")``."""

    name: str
    start: str
    end: str

    def __post_init__(self):
        if not self.name.strip():
            raise ConfigError(f"date range {self.start}:{self.end} has an empty name")
        try:
            parse_span(self.start, self.end)
        except ValueError as exc:
            raise ConfigError(f"date range {self.name!r}: {exc}") from None


@dataclass(frozen=True)
class Cell:
    """One backtest of the grid: ``strategy`` on ``symbol`` over ``range``. A portfolio cell (a symbol set of
    ``--symbol-sets majors=BTC/USDT:USDT+ETH/USDT:USDT``) has the set's name as ``symbol`` and its symbols in
    ``symbols``; a single-symbol cell has ``symbols == ()``."""

    strategy: str
    range: DateRange
    symbol: str
    symbols: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``"sma_cross | bear | BTC/USDT:USDT"``: how progress lines and error messages name the cell."""
        return f"{self.strategy} | {self.range.name} | {self.symbol}"

    @property
    def slug(self) -> str:
        """A file-system-safe folder name, ``"bear__BTC-USDT-USDT__sma_cross"``."""
        return "__".join(slugify(part) for part in (self.range.name, self.symbol, self.strategy))


@dataclass
class CellOutcome:
    """What running a cell produced: a ``result``, or an ``error`` (one line) with its ``detail`` (traceback).

    ``files`` maps file names of the cell's own report folder to their bytes, rendered where the cell ran so
    workers need no shared disk with the client; ``seconds`` is the wall time the cell took on its worker.
    """

    cell: Cell
    result: "BacktestResult | None" = None
    error: str | None = None
    detail: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None


def slugify(text: str) -> str:
    """``"BTC/USDT:USDT"`` -> ``"BTC-USDT-USDT"``: letters, digits, ``.``, ``_`` and ``-`` only, never empty, at most
    60 characters (so a path of three slugs fits any file system)."""
    slug = _SLUG.sub("-", text).strip("-.")[:60].strip("-.")
    return slug or "x"


def parse_ranges(text: str) -> list[DateRange]:
    """Ranges from ``--ranges``: comma-separated ``name=start:end`` (the name may be left out, then the span names
    itself). ``"bull=2020-10-01:2021-04-15,2022-04-01:2022-12-31"`` gives ranges named "bull" and
    "2022-04-01:2022-12-31". Times are allowed: ``2024-01-01T12:00:2024-01-02``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--ranges is empty; give name=YYYY-MM-DD:YYYY-MM-DD[,...]")
    ranges = []
    for item in items:
        match = _RANGE.match(item)
        if not match:
            raise ConfigError(f"cannot read date range {item!r}; use name=YYYY-MM-DD:YYYY-MM-DD")
        name = (match["name"] or f"{match['start']}:{match['end']}").strip()
        ranges.append(DateRange(name, match["start"], match["end"]))
    return check_unique(ranges)


def ranges_from_mapping(values: dict) -> list[DateRange]:
    """Ranges from a TOML table, in the file's order: ``bull = "2020-10-01:2021-04-15"`` or
    ``bull = { start = "2020-10-01", end = "2021-04-15" }``."""
    ranges = []
    for name, value in values.items():
        if isinstance(value, str):
            ranges += parse_ranges(f"{name}={value}")
        elif isinstance(value, dict) and set(value) == {"start", "end"}:
            ranges.append(DateRange(str(name), str(value["start"]), str(value["end"])))
        else:
            raise ConfigError(f"range {name!r}: expected \"start:end\" or {{ start = ..., end = ... }}, got {value!r}")
    return check_unique(ranges)


def check_unique(ranges: list[DateRange]) -> list[DateRange]:
    """``ranges`` unchanged; a name used twice, or two names that map to the same folder, is refused."""
    seen: dict[str, str] = {}
    for r in ranges:
        slug = slugify(r.name)
        if slug in seen:
            raise ConfigError(f"date range names {seen[slug]!r} and {r.name!r} clash; give each range its own name")
        seen[slug] = r.name
    return ranges


def rolling_ranges(start: str, end: str, window: str) -> list[DateRange]:
    """Consecutive, non-overlapping windows of ``window`` (``"90D"``, ``"2W"``, ``"6M"``, ``"1Y"``: days, weeks,
    calendar months, years) from ``start`` to ``end`` (inclusive dates); the last window stops at ``end``, so it
    may be shorter. Each is named by its first day. ``rolling_ranges("2022-01-01", "2022-12-31", "6M")`` gives
    ``2022-01-01..2022-06-30`` and ``2022-07-01..2022-12-31``."""
    match = _WINDOW.match(window.strip())
    if not match:
        raise ConfigError(f"cannot read rolling window {window!r}; use a count and a unit, e.g. 90D, 2W, 6M or 1Y")
    count, unit = int(match["count"]), match["unit"].upper()
    step = {"D": pd.DateOffset(days=count), "W": pd.DateOffset(weeks=count), "M": pd.DateOffset(months=count),
            "Y": pd.DateOffset(years=count)}[unit]
    for value in (start, end):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(value)):
            raise ConfigError(f"a rolling span needs plain dates (YYYY-MM-DD), got {value!r}")
    first, last = parse_time(start), parse_time(end)
    if first > last:
        raise ConfigError(f"rolling span is reversed: {start} is after {end}")
    out, k = [], 0
    while (begin := first + step * k) <= last:
        stop = min(first + step * (k + 1) - pd.Timedelta(days=1), last)
        out.append(DateRange(f"{begin:%Y-%m-%d}", f"{begin:%Y-%m-%d}", f"{stop:%Y-%m-%d}"))
        k += 1
    return out


def build_cells(strategies: list[str], ranges: list[DateRange], symbols: list[str],
                symbol_sets: list[tuple[str, tuple[str, ...]]] = ()) -> list[Cell]:
    """Every (strategy, range, symbol or symbol set) once, ordered by range, then symbol (the single symbols, then
    the sets), then strategy as given."""
    names = list(symbols) + [name for name, _ in symbol_sets]
    for what, items in (("strategies", strategies), ("symbols", names), ("ranges", [r.name for r in ranges])):
        if not items:
            raise ConfigError(f"the comparison needs at least one of {what}")
        dupes = sorted({x for x in items if items.count(x) > 1})
        if dupes:
            raise ConfigError(f"{what} listed twice: {', '.join(dupes)}")
    where = [(sym, ()) for sym in symbols] + [(name, tuple(members)) for name, members in symbol_sets]
    return [Cell(s, r, sym, members) for r in ranges for sym, members in where for s in strategies]


def parse_symbol_sets(text) -> list[tuple[str, tuple[str, ...]]]:
    """Symbol sets from ``--symbol-sets majors=BTC/USDT:USDT+ETH/USDT:USDT,alts=...`` (or a TOML table
    ``{ majors = ["BTC/USDT:USDT", "ETH/USDT:USDT"] }``): (name, symbols) pairs, each set at least two distinct
    symbols."""
    from data_feeds.symbols import check_symbol

    if isinstance(text, dict):
        items = [(str(k), v if isinstance(v, (list, tuple)) else str(v).split("+")) for k, v in text.items()]
    else:
        items = []
        for item in (i.strip() for i in str(text).split(",") if i.strip()):
            name, sep, members = item.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"cannot read symbol set {item!r}; use name=SYMBOL+SYMBOL, e.g. "
                                  f"majors=BTC/USDT:USDT+ETH/USDT:USDT")
            items.append((name.strip(), members.split("+")))
    if not items:
        raise ConfigError("--symbol-sets is empty; give name=SYMBOL+SYMBOL[,...]")
    out = []
    for name, members in items:
        members = tuple(check_symbol(str(m).strip()) for m in members if str(m).strip())
        if len(members) < 2 or len(set(members)) != len(members):
            raise ConfigError(f"symbol set {name!r} needs at least two distinct symbols, got {' + '.join(members)}")
        out.append((name, members))
    return out


__all__ = ["Cell", "CellOutcome", "DateRange", "build_cells", "parse_ranges", "parse_symbol_sets", "ranges_from_mapping",
           "rolling_ranges", "slugify"]
