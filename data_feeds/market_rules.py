"""What an exchange imposes on one market, as a dated record stored with the data: :class:`MarketRules`.

Where rules come from, first found wins (:func:`load_rules`):

1. a user's file (``--market-rules FILE``, JSON or TOML; one market's fields, or ``[markets."SYM"]`` tables);
2. the store: ``lstmbt download`` writes ``<store>/<exchange>/<SYMBOL>/market.json`` next to the Parquet files,
   from ccxt ``load_markets()`` (steps, minimums, contract size, fees, Binance's ``liquidationFee``) and, where
   the exchange serves them publicly, ``fetch_market_leverage_tiers`` (Bybit's ``/v5/market/risk-limit``;
   Binance's bracket endpoint needs signed requests, so its tiers are recorded as unavailable);
3. the shipped sample's dated snapshot (``data_feeds/sample/<exchange>_<SYMBOL>_market.json``, BTC and ETH);
4. :func:`default_rules`: stated conservative defaults, flagged ``is_default`` so that the CLI, the report and
   metrics.json say so loudly.

Maintenance margin of a tier, as Binance defines it: ``MM = notional x maintenance_rate - maintenance_amount``
(the amount, Binance's ``cum``, makes MM continuous across tiers). A tier holds notionals in ``(floor, cap]``.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping

from data_feeds.errors import DataError
from data_feeds.files import atomic_write
from data_feeds.symbols import symbol_to_filename

SAMPLE_DIR = Path(__file__).parent / "sample"
RULES_FILE = "market.json"


@dataclass(frozen=True)
class LeverageTier:
    """One leverage bracket: notionals in ``(floor, cap]`` USDT may use up to ``max_leverage``; maintenance
    margin there is ``notional x maintenance_rate - maintenance_amount``."""

    floor: float
    cap: float
    max_leverage: float
    maintenance_rate: float
    maintenance_amount: float = float("nan")  # NaN: derive it from continuity (see :func:`complete_amounts`)


@dataclass(frozen=True)
class MarketRules:
    """One market's rules. Quantities are in contracts (``contract_size`` base units each), prices in USDT.

    ``qty_step=0.001``: sizes are multiples of 0.001 contracts; ``min_notional=100``: an order worth less than
    100 USDT is refused. ``liquidation_fee`` is the exchange's liquidation ("insurance clearance") fee rate,
    0.0125 = 1.25 % of the liquidated notional. ``tiers`` empty means unknown (``tiers_note`` says why).
    """

    exchange: str
    symbol: str
    qty_step: float = 0.0
    price_tick: float = 0.0
    min_qty: float = 0.0
    min_notional: float = 0.0
    contract_size: float = 1.0
    maker_fee: float | None = None
    taker_fee: float | None = None
    liquidation_fee: float | None = None
    tiers: tuple[LeverageTier, ...] = ()
    source: str = ""
    fetched: str = ""           # date (UTC, ISO) the rules were read from the exchange or published
    tiers_note: str = ""
    is_default: bool = False

    def __post_init__(self):
        for name in ("qty_step", "price_tick", "min_qty", "min_notional"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise DataError(f"market rules for {self.symbol}: {name} must be a number >= 0, got {value!r}")
        if not self.contract_size > 0:
            raise DataError(f"market rules for {self.symbol}: contract_size must be > 0, got {self.contract_size!r}")
        object.__setattr__(self, "tiers", complete_amounts(tuple(self.tiers), self.symbol))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (:func:`rules_from_dict` reads it back); infinite caps are written as null."""
        out = asdict(self)
        out["tiers"] = [{**t, "cap": None if math.isinf(t["cap"]) else t["cap"]} for t in out["tiers"]]
        return out

    def describe(self, source: bool = True) -> str:
        """One line: what the rules say and (``source``) where they come from, e.g. for the CLI and the report."""
        tiers = (f"{len(self.tiers)} leverage tiers (max {self.tiers[0].max_leverage:g}x)" if self.tiers
                 else "no leverage tiers")
        fees = (f", fees maker {self.maker_fee:.4%} / taker {self.taker_fee:.4%}"
                if self.maker_fee is not None and self.taker_fee is not None else "")
        text = (f"{self.exchange} {self.symbol}: qty step {self.qty_step:g}, min qty {self.min_qty:g}, "
                f"min notional {self.min_notional:g} USDT, price tick {self.price_tick:g}{fees}, {tiers}")
        return text + (f"; {self.source}" + (f", {self.fetched}" if self.fetched else "") if source else "")


def complete_amounts(tiers: tuple[LeverageTier, ...], symbol: str = "") -> tuple[LeverageTier, ...]:
    """Tiers sorted by floor with every missing maintenance amount derived from continuity of MM at each floor:
    ``amount_k = amount_{k-1} + floor_k x (rate_k - rate_{k-1})`` (BTC 2021: 0, 50, 1,300, 16,300, ...)."""
    out: list[LeverageTier] = []
    for tier in sorted(tiers, key=lambda t: t.floor):
        if not (0 < tier.maintenance_rate < 1 and tier.max_leverage >= 1 and tier.cap > tier.floor >= 0):
            raise DataError(f"market rules for {symbol}: bad leverage tier {tier}")
        amount = tier.maintenance_amount
        if amount is None or not math.isfinite(amount):
            amount = 0.0 if not out else (out[-1].maintenance_amount
                                          + tier.floor * (tier.maintenance_rate - out[-1].maintenance_rate))
        out.append(replace(tier, maintenance_amount=float(amount)))
    if out and out[0].floor != 0:
        raise DataError(f"market rules for {symbol}: the first leverage tier must start at notional 0")
    return tuple(out)


def rules_from_dict(values: Mapping[str, Any], where: str = "market rules") -> MarketRules:
    """A :class:`MarketRules` from plain data (JSON/TOML); unknown keys are refused with their names."""
    values = dict(values)
    names = set(MarketRules.__dataclass_fields__)
    unknown = sorted(set(values) - names)
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    tiers = []
    for i, t in enumerate(values.pop("tiers", []) or []):
        t = dict(t)
        extra = sorted(set(t) - set(LeverageTier.__dataclass_fields__))
        if extra:
            raise DataError(f"{where}: tier {i + 1} has unknown key(s) {', '.join(extra)}")
        try:
            cap = float("inf") if t.get("cap") is None else float(t["cap"])
            amount = t.get("maintenance_amount")
            tiers.append(LeverageTier(float(t["floor"]), cap, float(t["max_leverage"]), float(t["maintenance_rate"]),
                                      float("nan") if amount is None else float(amount)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: tier {i + 1} needs numeric floor, max_leverage, maintenance_rate "
                            f"({exc.__class__.__name__}: {exc})") from None
    try:
        return MarketRules(**values, tiers=tuple(tiers))
    except TypeError as exc:
        raise DataError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------- from ccxt

def rules_from_ccxt(exchange_id: str, market: Mapping[str, Any], tiers: list[Mapping[str, Any]] | None, *,
                    fetched: str, tick_size_mode: bool = True, tiers_note: str = "") -> MarketRules:
    """Rules from a ccxt market (``exchange.markets[symbol]``) and its unified leverage tiers (or None).

    ``tick_size_mode``: the exchange's ``precisionMode`` is TICK_SIZE (precision = the step itself, as on
    Binance and Bybit in ccxt 4) rather than decimal places. The maintenance amount comes from the tier's raw
    answer (Binance ``cum``, Bybit ``mmDeduction``) where present, else from continuity.
    """
    def step(value):
        if value is None:
            return 0.0
        return float(value) if tick_size_mode else 10.0 ** -float(value)

    precision = market.get("precision") or {}
    limits = market.get("limits") or {}
    info = market.get("info") or {}
    parsed = []
    for t in tiers or []:
        raw = t.get("info") or {}
        amount = raw.get("cum", raw.get("mmDeduction"))
        try:
            amount = float(amount) if amount not in (None, "") else float("nan")
        except (TypeError, ValueError):
            amount = float("nan")
        cap = t.get("maxNotional")
        parsed.append(LeverageTier(float(t.get("minNotional") or 0.0), float("inf") if cap is None else float(cap),
                                   float(t["maxLeverage"]), float(t["maintenanceMarginRate"]), amount))
    liq = info.get("liquidationFee")
    return MarketRules(
        exchange=exchange_id, symbol=market["symbol"], qty_step=step(precision.get("amount")),
        price_tick=step(precision.get("price")), min_qty=float((limits.get("amount") or {}).get("min") or 0.0),
        min_notional=float((limits.get("cost") or {}).get("min") or 0.0),
        contract_size=float(market.get("contractSize") or 1.0),
        maker_fee=_maybe_float(market.get("maker")), taker_fee=_maybe_float(market.get("taker")),
        liquidation_fee=_maybe_float(liq), tiers=tuple(parsed),
        source="ccxt load_markets()" + (" + fetch_market_leverage_tiers()" if parsed else "") + f" on {exchange_id}",
        fetched=fetched, tiers_note=tiers_note)


def _maybe_float(value) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------- files

def rules_path(store_root: str | os.PathLike, exchange: str, symbol: str) -> Path:
    """Where ``lstmbt download`` keeps a market's rules: next to its Parquet files."""
    return Path(store_root) / exchange / symbol_to_filename(symbol) / RULES_FILE


def sample_rules_path(exchange: str, symbol: str) -> Path:
    """The shipped sample's snapshot for a market (it may not exist)."""
    return SAMPLE_DIR / f"{exchange}_{symbol_to_filename(symbol)}_market.json"


def write_rules(rules: MarketRules, path: str | os.PathLike) -> Path:
    """Write ``rules`` as JSON atomically (temporary file, then rename)."""
    return atomic_write(path, json.dumps(rules.to_dict(), indent=1) + "\n")


def read_rules_file(path: str | os.PathLike, symbol: str | None = None, exchange: str | None = None) -> MarketRules:
    """Rules from a JSON or TOML file: one market's fields, or ``markets`` keyed by ccxt symbol (then ``symbol``
    picks one). A missing ``exchange``/``symbol`` field is filled from the arguments."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise DataError(f"market rules file {p}: {exc.strerror or exc}") from None
    try:
        values = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"market rules file {p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'} ({exc})") \
            from None
    if not isinstance(values, dict):
        raise DataError(f"market rules file {p}: expected an object/table at the top")
    if "markets" in values:
        markets = values["markets"]
        if symbol not in markets:
            raise DataError(f"market rules file {p} has no entry for {symbol}; it has: {', '.join(markets)}")
        values = markets[symbol]
    values = {"exchange": exchange or "", "symbol": symbol or "", "source": f"file {p}", **values}
    if symbol and values["symbol"] != symbol:
        raise DataError(f"market rules file {p} is for {values['symbol']}, not {symbol}")
    return rules_from_dict(values, f"market rules file {p}")


# ---------------------------------------------------------------------------------------------- lookup

def default_rules(exchange: str, symbol: str) -> MarketRules:
    """Conservative stand-ins for a market without known rules (flagged ``is_default``).

    Binance's 2021-03-18 tiers for its 50x alt-coin USDT-M perpetuals (50x at 1 % maintenance up to 5,000 USDT,
    then 20x/2.5 %, 10x/5 %, 5x/10 %, 2x/12.5 %, 1x/50 %), Binance's smallest minimum order value (5 USDT),
    no quantity step, and a 1.5 % liquidation fee (the highest ``liquidationFee`` in Binance's 2024 exchangeInfo
    for USDT-M perpetuals, e.g. BCHUSDT, LTCUSDT).
    """
    floors = (0, 5_000, 25_000, 100_000, 250_000, 1_000_000)
    caps = floors[1:] + (float("inf"),)
    levs = (50, 20, 10, 5, 2, 1)
    rates = (0.01, 0.025, 0.05, 0.10, 0.125, 0.50)
    return MarketRules(exchange=exchange, symbol=symbol, min_notional=5.0, liquidation_fee=0.015,
                       tiers=tuple(LeverageTier(f, c, lv, r) for f, c, lv, r in zip(floors, caps, levs, rates)),
                       source="conservative defaults (no market rules known: pass --market-rules or download)",
                       is_default=True)


def load_rules(exchange: str, symbol: str, *, store_dir: str | os.PathLike | None = None,
               path: str | os.PathLike | None = None) -> MarketRules:
    """The market's rules: ``path`` (a user's file), else the store, else the shipped snapshot, else
    :func:`default_rules` (see the module docstring)."""
    if path is not None:
        return with_tiers(read_rules_file(path, symbol, exchange))
    from data_feeds.store import default_store_dir  # the store module stays free of this one

    root = Path(store_dir) if store_dir is not None else default_store_dir()
    for candidate in (rules_path(root, exchange, symbol), sample_rules_path(exchange, symbol)):
        if candidate.exists():
            return with_tiers(read_rules_file(candidate, symbol, exchange))
    return default_rules(exchange, symbol)


def with_tiers(rules: MarketRules) -> MarketRules:
    """``rules`` as they are when they have leverage tiers; else with the shipped snapshot's tiers for the market,
    else the conservative default tiers, and ``tiers_note`` saying so (Binance without API keys)."""
    if rules.tiers:
        return rules
    snapshot = sample_rules_path(rules.exchange, rules.symbol)
    if snapshot.exists():
        snap = read_rules_file(snapshot, rules.symbol, rules.exchange)
        if snap.tiers:
            return replace(rules, tiers=snap.tiers, tiers_note=f"{rules.tiers_note}; tiers from the shipped snapshot "
                                                                f"({snap.fetched})".lstrip("; "))
    return replace(rules, tiers=default_rules(rules.exchange, rules.symbol).tiers,
                   tiers_note=f"{rules.tiers_note}; tiers: conservative defaults".lstrip("; "))

