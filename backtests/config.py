"""Typed run configuration, read from a TOML file and/or command-line flags.

A config file looks like ``backtests/configs/btc_lstm_1h.toml``::

    name = "btc-lstm-1h"
    strategy = "lstm"
    baselines = ["buy_hold", "sma_cross", "flat"]

    [data]
    symbol = "BTC/USDT:USDT"
    timeframe = "1h"
    start = "2024-07-01"
    end = "2025-12-31"

    [broker]
    leverage = 2

    [model]          # model kind and hyperparameters (strategies/ml/config.py): kind = "lstm", "logreg", "my.py:Cls"
    window = 48

Unknown keys are refused with a message naming them, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backtests.slippage import check_model
from backtests.validation import (ConfigError, check_fields, check_model_size, check_name, check_symbol_field)


LIQUIDATION_MODELS = ("binance", "flat")


@dataclass(frozen=True)
class BrokerConfig:
    """Broker settings for one run.

    ``leverage=5``: initial margin is notional / 5. ``taker_fee=0.0005`` is 0.05 % of notional per fill
    (Binance USDT-M base tier: taker 0.05 %, maker 0.02 %). ``slippage="fixed"`` with ``slippage_bps=1`` moves
    each market fill 1 basis point (0.01 %) against the order, capped by the bar's high/low; ``"range"`` and
    ``"volume"`` use ``slippage_coef`` (see :mod:`backtests.slippage`); ``"none"`` fills at the open.
    ``liquidation_fee``: the liquidation ("insurance clearance") fee rate, 0.0125 = 1.25 % of the liquidated
    notional; None (default) takes the market's own rate from its rules (Binance ``liquidationFee``: 1.25 % on
    BTCUSDT, ETHUSDT, XRPUSDT in 2024), 0.0125 where unknown. ``liquidation_model``: ``"binance"`` (default)
    follows Binance's liquidation protocol: a position still margin-compliant after the fee pays it and keeps the
    rest; a margin-deficient one is closed at its bankruptcy price and its remaining collateral goes to the
    insurance fund (:func:`backtests.margin.liquidation_exit`); ``"flat"`` closes at the liquidation price with
    the flat fee capped at the maintenance margin left (the earlier model: same loss, other fill price).
    ``funding=False`` / ``liquidation=False`` switch those off (e.g. to isolate a strategy's
    price PnL). ``fee_source="auto"`` (neither fee set by the user): a run uses the market's stored maker/taker
    fees where its rules carry them (:func:`backtests.margin.fee_rates`), these defaults otherwise; the run's
    resolved config then names where its fees came from. Fees set in a config, by a flag or in Python are used as
    given (``"config"``).
    """

    cash: float = 10_000.0
    leverage: float = 1.0
    taker_fee: float = 0.0005
    maker_fee: float = 0.0002
    slippage_bps: float = 1.0
    funding: bool = True
    slippage: str = "fixed"
    slippage_coef: float = 0.1
    liquidation: bool = True
    liquidation_fee: float | None = None
    liquidation_model: str = "binance"
    fee_source: str = "auto"

    def __post_init__(self):
        check_fields(self)
        if self.fee_source == "auto" and (self.taker_fee, self.maker_fee) != (0.0005, 0.0002):
            object.__setattr__(self, "fee_source", "config")   # fees set by the user are theirs
        if not self.cash > 0:
            raise ValueError(f"cash must be positive, got {self.cash}")
        if not 1 <= self.leverage <= 125:
            raise ValueError(f"leverage must be between 1 and 125, got {self.leverage}")
        limits = {"taker_fee": 1, "maker_fee": 1, "liquidation_fee": 1, "slippage_bps": 10_000, "slippage_coef": 100}
        if self.liquidation_model not in LIQUIDATION_MODELS:
            raise ValueError(f"liquidation_model must be one of {', '.join(LIQUIDATION_MODELS)}, "
                             f"got {self.liquidation_model!r}")
        for name, limit in limits.items():
            if name == "liquidation_fee" and self.liquidation_fee is None:
                continue
            if not 0 <= getattr(self, name) < limit:
                raise ValueError(f"{name} out of range [0, {limit}): {getattr(self, name)}")
        check_model(self.slippage)


@dataclass(frozen=True)
class DataConfig:
    """Which market and span to backtest. ``end`` is inclusive: "2025-12-31" covers that whole day.

    ``path``: a user's own CSV/Parquet candles file instead of the store/shipped sample.
    ``store_dir``: the local store folder (default: ``$LSTMBT_DATA_DIR`` or the user cache folder).
    ``market_rules``: a JSON/TOML file of the market's rules (steps, minimums, leverage tiers; see
    :mod:`data_feeds.market_rules`) instead of the ones stored with the data or shipped.
    ``mark_path``: a user's own mark-price candles file (timestamp,open,high,low,close), next to ``funding_path``.
    """

    exchange: str = "binanceusdm"
    symbol: str = "BTC/USDT:USDT"
    timeframe: str = "1h"
    start: str = "2024-07-01"
    end: str = "2025-12-31"
    path: str | None = None
    funding_path: str | None = None
    store_dir: str | None = None
    market_rules: str | None = None
    mark_path: str | None = None

    def __post_init__(self):
        from data_feeds.store import check_path_name
        from data_feeds.timeframes import timeframe_seconds

        check_fields(self)
        check_symbol_field(self.symbol)
        check_path_name(self.exchange, "exchange id")
        timeframe_seconds(self.timeframe)


@dataclass(frozen=True)
class BacktestConfig:
    """One backtest: data, broker, strategy (and the baselines it is compared with) and where output goes.

    ``fraction=0.99``: each position's initial margin plus its opening fee and slippage use 99 % of equity
    (see :mod:`strategies.base`), decided on the bar's close and filled at the next open; the 1 % left covers
    the gap between that close and open.
    """

    name: str = "backtest"
    strategy: str = "lstm"          # a registered name, "path/to/file.py:Class" or "pkg.mod:Class"
    baselines: tuple[str, ...] = ()
    data: DataConfig = field(default_factory=DataConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    fraction: float = 0.99
    params: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    seed: int = 42
    out_dir: str = "runs"
    cache_dir: str | None = None
    risk_free: float = 0.0    # annual rate for Sharpe, Sortino and the verdict: 0.04 = 4 %
    # a portfolio (backtests/portfolio): several symbols in one account; empty = the single-symbol run of data.symbol
    symbols: tuple[str, ...] = ()
    margin: str = "isolated"        # "isolated" or "cross" (portfolio runs)
    weights: dict | list | None = None   # {symbol: share} or shares in symbols order; normalised; None = equal

    def __post_init__(self):
        check_fields(self)
        check_name(self.name)
        _check_portfolio(self)
        if not self.strategy:
            raise ConfigError("strategy must name a strategy, e.g. \"lstm\" or \"sma_cross\"")
        check_model_size(self.model)
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {self.fraction}")
        # a strategy file (my_rsi.py:Rsi) is kept as an absolute path: workers and --rerun find the same file
        from strategies.loader import canonical_spec

        object.__setattr__(self, "strategy", canonical_spec(self.strategy))
        if isinstance(self.baselines, (tuple, list)):
            object.__setattr__(self, "baselines", tuple(canonical_spec(b) for b in self.baselines))
        if isinstance(self.risk_free, bool) or not isinstance(self.risk_free, (int, float)) \
                or not -0.5 < self.risk_free < 1:
            raise ConfigError(f"risk_free must be an annual rate between -0.5 and 1 (0.04 = 4 %), got {self.risk_free!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able data (round-trips through :func:`config_from_dict`)."""
        out = dataclasses.asdict(self)
        out["baselines"] = list(self.baselines)
        if not self.symbols:        # a single-symbol run records exactly what it recorded before portfolios existed
            for key in ("symbols", "margin", "weights"):
                out.pop(key)
        else:
            out["symbols"] = list(self.symbols)
        return out

    def replace(self, **changes) -> "BacktestConfig":
        """A copy with top-level fields changed; ``data=`` / ``broker=`` accept dicts of changed keys."""
        for key, cls_ in (("data", DataConfig), ("broker", BrokerConfig)):
            if isinstance(changes.get(key), dict):
                changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        return dataclasses.replace(self, **changes)


MARGIN_MODES = ("isolated", "cross")


def _check_portfolio(config: "BacktestConfig") -> None:
    """symbols distinct, margin a known mode, weights positive numbers naming exactly the symbols (normalised to
    a ``{symbol: share}`` dict in symbols order)."""
    import math

    symbols = tuple(check_symbol_field(s) for s in config.symbols)
    dupes = sorted({s for s in symbols if symbols.count(s) > 1})
    if dupes:
        raise ConfigError(f"symbols listed twice: {', '.join(dupes)}")
    object.__setattr__(config, "symbols", symbols)
    if config.margin not in MARGIN_MODES:
        raise ConfigError(f"margin must be cross or isolated, got {config.margin!r}")
    weights = config.weights
    if weights is None or (isinstance(weights, (dict, list, tuple)) and not weights and not symbols):
        object.__setattr__(config, "weights", None)
        return
    if not symbols:
        raise ConfigError("weights need symbols (a portfolio); a single-symbol run has no weights")
    if isinstance(weights, (list, tuple)):
        if len(weights) != len(symbols):
            raise ConfigError(f"weights: {len(weights)} value(s) for {len(symbols)} symbols")
        weights = dict(zip(symbols, weights))
    unknown = sorted(set(weights) - set(symbols))
    missing = [s for s in symbols if s not in weights]
    if unknown:
        raise ConfigError(f"weights name symbol(s) not traded: {', '.join(map(str, unknown))}")
    if missing:
        raise ConfigError(f"weights: no weight for {', '.join(missing)}; give one per symbol (or none: equal)")
    for s in symbols:
        w = weights[s]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
            raise ConfigError(f"weight of {s} must be a positive number, got {w!r}")
    object.__setattr__(config, "weights", {s: float(weights[s]) for s in symbols})


def _build(cls, values: dict, where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def config_from_dict(values: dict, where: str = "config") -> BacktestConfig:
    """Build a :class:`BacktestConfig` from nested plain data (as read from TOML)."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table of settings, got {type(values).__name__}")
    values = dict(values)
    tables = {}
    for key in ("data", "broker"):
        table = values.pop(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {key} must be a [{key}] table, got {table!r:.60}")
        tables[key] = table
    data = _build(DataConfig, dict(tables["data"]), f"{where} [data]")
    broker_table = dict(tables["broker"])
    if ("taker_fee" in broker_table or "maker_fee" in broker_table) and "fee_source" not in broker_table:
        broker_table["fee_source"] = "config"      # fees written in the file are the user's, even at the defaults
    broker = _build(BrokerConfig, broker_table, f"{where} [broker]")
    return _build(BacktestConfig, {**values, "data": data, "broker": broker}, where)


def read_toml(path: str | Path) -> dict:
    """The tables of a TOML file; a missing or malformed file is a one-line ConfigError naming it."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid TOML ({exc})") from None


def load_config(path: str | Path) -> BacktestConfig:
    """Read a TOML config file; errors name the file and the problem in one line."""
    return config_from_dict(read_toml(path), str(path))


MAIN_JOB_CONFIG = Path(__file__).resolve().parent / "configs" / "btc_lstm_1h.toml"


def main_job_config() -> BacktestConfig:
    """The main job: ``backtests/configs/btc_lstm_1h.toml``, what README command 1, ``lstmbt backtest`` without
    ``--config`` or ``--strategy`` and ``python backtests/btc_lstm_1h.py`` all run."""
    return load_config(MAIN_JOB_CONFIG)
