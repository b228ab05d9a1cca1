"""A fake Binance USDT-M / Bybit v5 market-data server on 127.0.0.1 for download tests.

It answers just the public endpoints real ccxt objects call to load linear markets and to fetch
candles, mark-price candles and funding-rate history, with the real data shipped in
``data_feeds/sample`` (Binance's series; the Bybit endpoints serve the same numbers in Bybit's
format). Tests point a real ccxt exchange at it with :meth:`FakeExchange.ccxt_config`, which
rewrites every entry of ``exchange.urls['api']`` to the loopback address and keeps the paths.

Faults are injected per endpoint with :class:`Fault` (HTTP 429 with Retry-After, 5xx, a dropped
connection, a slow answer, malformed JSON, an HTML page, an empty page, a page missing a candle),
and a real exchange gap (maintenance: the exchange has no rows) with :meth:`FakeExchange.remove`.
Every request is logged in :attr:`FakeExchange.requests`.

With ``websocket=True`` it also serves Binance USDT-M's kline stream (:class:`KlineStream`, aiohttp) on its own
loopback port; :meth:`FakeExchange.ccxt_config` then points ccxt.pro's ``urls['api']['ws']`` there.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit, urlunsplit

import ccxt
import ccxt.pro as ccxt_pro
import numpy as np
import pandas as pd

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "data_feeds" / "sample"
SYMBOLS = {"BTCUSDT": ("BTC", "BTC-USDT-USDT"), "ETHUSDT": ("ETH", "ETH-USDT-USDT")}
BINANCE_INTERVALS = {"1m": "1m", "15m": "15m", "1h": "1h"}
BYBIT_INTERVALS = {"1": "1m", "15": "15m", "60": "1h"}
STEP_MS = {"1m": 60_000, "15m": 900_000, "1h": 3_600_000}
BYBIT_TOO_MANY = '{"retCode":10006,"retMsg":"Too many visits!","result":{},"retExtInfo":{},"time":0}'
FAULT_KINDS = ("429", "503", "drop", "slow", "malformed", "html", "empty", "missing_candle", "flaky_candle",
               "off_grid", "duplicate", "late", "partial")


@lru_cache(maxsize=None)
def sample_frame(file_symbol: str, suffix: str) -> pd.DataFrame:
    """The shipped sample file ``binanceusdm_<file_symbol>_<suffix>.csv.gz`` with an int64 ms ``timestamp`` column."""
    return pd.read_csv(SAMPLE_DIR / f"binanceusdm_{file_symbol}_{suffix}.csv.gz")


@dataclass
class Fault:
    """Answer matching requests wrongly.

    ``kind`` is one of :data:`FAULT_KINDS` (``missing_candle`` drops the middle row of the page,
    ``flaky_candle`` a different row each time, ``off_grid`` moves the middle row 30 s later, ``empty``
    answers no rows, ``duplicate`` repeats the newest and the oldest row, ``late`` withholds the newest two rows:
    on a live clock the forming candle and the newest closed one); ``endpoint`` is the last part of the path
    (``"klines"``, ``"kline"``, ``"fundingRate"``, ``"exchangeInfo"``...). The first ``skip`` matching requests are answered normally, then the next
    ``times`` ones (``-1``: all) get the fault. ``when`` narrows the match on the query parameters.
    """

    kind: str
    endpoint: str
    skip: int = 0
    times: int = 1
    retry_after: str | None = None
    delay: float = 2.0
    when: Callable[[dict], bool] | None = None
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")


@dataclass
class Request:
    """One request the server saw: path, query parameters (single values), arrival time and fault applied."""

    path: str
    params: dict
    at: float
    fault: str | None = None


@dataclass
class FakeExchange:
    """The server; use as a context manager (``with FakeExchange() as fake:``)."""

    faults: list[Fault] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    page_delay: float = 0.0
    clock: Callable[[], int] | None = None
    """The exchange's "now" in epoch ms for live tests (see :class:`AcceleratedClock`); None serves every row.
    With a clock, rows after "now" do not exist yet and the candle that is still forming is served with
    provisional values (high = low = close = open, half the volume), as a live exchange serves it."""
    websocket: bool = False
    """Also serve the kline websocket (:attr:`stream`, a :class:`KlineStream`); needs a ``clock``."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._removed: list[tuple[str, str, int, int]] = []
        self._server: ThreadingHTTPServer | None = None
        self.orders: list[dict] = []  # demo-account orders received (Binance USDT-M order endpoint)
        self.leverage: dict[str, int] = {}
        self.stream: KlineStream | None = None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> "FakeExchange":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Serve on an ephemeral port of 127.0.0.1 in a daemon thread."""
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        if self.websocket:
            self.stream = KlineStream(self)
            self.stream.start()

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
            self.stream = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def ccxt_config(self, exchange_id: str, *, timeout_ms: int = 3000, demo: bool = False) -> dict:
        """Constructor options pointing ccxt's ``exchange_id`` at this server (every urls['api'] entry, paths kept);
        ``demo=True`` also points its demo-trading urls here (what ``enable_demo_trading`` switches to)."""
        urls = getattr(ccxt, exchange_id)().urls
        api = urls["api"]
        loop = urlsplit(self.url)

        def rewrite(value):
            if isinstance(value, dict):
                return {k: rewrite(v) for k, v in value.items()}
            parts = urlsplit(value)
            return urlunsplit((loop.scheme, loop.netloc, parts.path, parts.query, parts.fragment))

        out = {"api": rewrite(api)}
        if self.stream is not None:  # ccxt.pro's stream urls (the REST class has none)
            ws = getattr(ccxt_pro, exchange_id)().urls["api"]["ws"]
            out["api"]["ws"] = _rewrite_urls(ws, "ws", f"127.0.0.1:{self.stream.port}")
        if demo:
            out["demo"] = rewrite(urls["demo"])
        return {"urls": out, "rateLimit": 1, "timeout": timeout_ms}

    # ------------------------------------------------------------------ test controls

    def remove(self, symbol_id: str, what: str, start: str, end: str) -> None:
        """Make the exchange hold no rows of ``what`` (``"1h"``, ``"mark_1h"``, ``"funding"``) in ``[start, end]``."""
        t0, t1 = (int(pd.Timestamp(t, tz="UTC").value // 1_000_000) for t in (start, end))
        self._removed.append((symbol_id, what, t0, t1))

    def served(self, endpoint: str) -> list[Request]:
        """Requests that reached ``endpoint``."""
        return [r for r in self.requests if r.path.rsplit("/", 1)[-1] == endpoint]

    # ------------------------------------------------------------------ data

    def rows(self, symbol_id: str, what: str, start: int | None, end: int | None) -> np.ndarray:
        """Rows of the served series with timestamp in ``[start, end]`` as a float array (column 0: ms)."""
        suffix = "funding_8h" if what == "funding" else what
        if suffix.startswith("mark_") and not (SAMPLE_DIR / f"binanceusdm_{SYMBOLS[symbol_id][1]}_{suffix}.csv.gz").exists():
            suffix = suffix.removeprefix("mark_")  # no mark series shipped at this bar size: serve last prices
        df = sample_frame(SYMBOLS[symbol_id][1], suffix)
        ts = df["timestamp"].to_numpy("int64")
        keep = np.ones(len(ts), dtype=bool)
        if start is not None:
            keep &= ts >= start
        if end is not None:
            keep &= ts <= end
        for sym, w, t0, t1 in self._removed:
            if sym == symbol_id and w == what:
                keep &= (ts < t0) | (ts > t1)
        if self.clock is None:
            return df.to_numpy("float64")[keep]
        now = self.clock()
        rows = df.to_numpy("float64")[keep & (ts <= now)]
        step = STEP_MS.get(what.removeprefix("mark_"))
        if step and len(rows) and rows[-1, 0] + step > now:  # still forming: provisional values
            rows = rows.copy()
            rows[-1, 2:5] = rows[-1, 1]
            if rows.shape[1] > 5:
                rows[-1, 5] *= 0.5
        return rows

    def _take_fault(self, endpoint: str, params: dict) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.endpoint != endpoint or fault.times == 0:
                    continue
                if fault.when is not None and not fault.when(params):
                    continue
                fault.hits += 1
                if fault.hits <= fault.skip:
                    continue
                if fault.times > 0:
                    fault.times -= 1
                return fault
        return None


class _QuietServer(ThreadingHTTPServer):
    """Clients that time out or are killed drop their connections; that is expected here, not worth a traceback."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _rewrite_urls(value, scheme: str, netloc: str):
    if isinstance(value, dict):
        return {k: _rewrite_urls(v, scheme, netloc) for k, v in value.items()}
    parts = urlsplit(value)
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))


def _num(x: float) -> str:
    return repr(float(x))


def _window(rows: np.ndarray, limit: int, newest_first: bool) -> np.ndarray:
    """Binance answers the oldest ``limit`` rows of the range; Bybit the newest ``limit``, newest first."""
    if newest_first:
        return rows[-limit:][::-1] if limit else rows[:0]
    return rows[:limit]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    fake: FakeExchange

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        split = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(split.query).items()}
        endpoint = split.path.rsplit("/", 1)[-1]
        fault = self.fake._take_fault(endpoint, params)
        with self.fake._lock:
            self.fake.requests.append(Request(split.path, params, time.monotonic(), fault.kind if fault else None))
        if self.fake.page_delay and endpoint not in ("exchangeInfo", "instruments-info"):
            time.sleep(self.fake.page_delay)
        try:
            self._answer(split.path, params, fault)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = {k: v[0] for k, v in {**parse_qs(split.query), **parse_qs(body)}.items()}
        endpoint = split.path.rsplit("/", 1)[-1]
        fault = self.fake._take_fault(endpoint, params)
        with self.fake._lock:
            self.fake.requests.append(Request(split.path, params, time.monotonic(), fault.kind if fault else None))
        if not self.headers.get("X-MBX-APIKEY"):
            return self._send(401, '{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')
        route = POST_ROUTES.get(split.path)
        if route is None:
            return self._send(404, '{"code":-5000,"msg":"Path not found"}')
        status, payload = route(self.fake, params, fault)
        self._send(status, json.dumps(payload, separators=(",", ":")))

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: str, content_type: str = "application/json", headers: dict | None = None):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, path: str, params: dict, fault: Fault | None) -> None:
        if fault is not None:
            if fault.kind == "drop":
                self.close_connection = True
                return
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "429":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                body = (BYBIT_TOO_MANY if path.startswith("/v5/") else
                        '{"code":-1003,"msg":"Too many requests; current limit is 2400 requests per minute."}')
                return self._send(429, body, headers=headers)
            elif fault.kind == "503":
                return self._send(503, "<html><body>503 Service Temporarily Unavailable</body></html>", "text/html")
            elif fault.kind == "malformed":
                return self._send(200, '[[1704067200000,"42283.5","42554.5"')
            elif fault.kind == "html":
                return self._send(200, "<html><body>Just a moment...</body></html>", "text/html")
        route = ROUTES.get(path)
        if route is None:
            return self._send(404, '{"code":-5000,"msg":"Path not found"}')
        status, payload = route(self.fake, params, fault)
        self._send(status, json.dumps(payload, separators=(",", ":")))


# ---------------------------------------------------------------------- Binance USDT-M

def _binance_error(code: int, msg: str) -> tuple[int, dict]:
    return 400, {"code": code, "msg": msg}


def _binance_exchange_info(fake, params, fault):
    symbols = [{
        "symbol": sid, "pair": sid, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": base, "quoteAsset": "USDT",
        "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "underlyingType": "COIN",
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                       "TRAILING_STOP_MARKET"],
        "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                    {"filterType": "MIN_NOTIONAL", "notional": "100"}],
        "liquidationFee": "0.012500", "marketTakeBound": "0.05",
    } for sid, (base, _) in SYMBOLS.items()]
    now = fake.clock() if fake.clock is not None else int(time.time() * 1000)
    return 200, {"timezone": "UTC", "serverTime": now, "rateLimits": [], "exchangeFilters": [],
                 "assets": [], "symbols": symbols}


def _binance_time(fake, params, fault):
    return 200, {"serverTime": fake.clock() if fake.clock is not None else int(time.time() * 1000)}


def _binance_range(fake, params, what_of_interval):
    sid = params.get("symbol")
    if sid not in SYMBOLS:
        return None, _binance_error(-1121, "Invalid symbol.")
    interval = params.get("interval")
    if interval not in BINANCE_INTERVALS:
        return None, _binance_error(-1120, "Invalid interval.")
    tf = BINANCE_INTERVALS[interval]
    limit = min(int(params.get("limit", 500)), 1500)
    start = int(params["startTime"]) if "startTime" in params else None
    end = int(params["endTime"]) if "endTime" in params else None
    rows = fake.rows(sid, what_of_interval(tf), start, end)
    return (rows[-limit:] if start is None else rows[:limit], tf), None


def _drop_one(rows: np.ndarray, fault: Fault | None) -> np.ndarray:
    """Apply a page-content fault to the rows about to be served."""
    if fault is not None and fault.kind == "missing_candle" and len(rows) > 2:
        return np.delete(rows, len(rows) // 2, axis=0)
    if fault is not None and fault.kind == "flaky_candle" and len(rows) > 2:
        return np.delete(rows, fault.hits % len(rows), axis=0)
    if fault is not None and fault.kind == "off_grid" and len(rows) > 2:
        rows = rows.copy()
        rows[len(rows) // 2, 0] += 30_000
    if fault is not None and fault.kind == "empty":
        return rows[:0]
    if fault is not None and fault.kind == "duplicate" and len(rows):
        return np.concatenate([rows, rows[-1:], rows[:1]])
    if fault is not None and fault.kind == "late":
        return rows[:-2]
    return rows


def _binance_klines(fake, params, fault, mark=False):
    got, error = _binance_range(fake, params, (lambda tf: f"mark_{tf}") if mark else (lambda tf: tf))
    if error:
        return error
    rows, tf = got
    rows = _drop_one(rows, fault)
    step = STEP_MS[tf]
    return 200, [[int(r[0]), _num(r[1]), _num(r[2]), _num(r[3]), _num(r[4]), _num(r[5]), int(r[0]) + step - 1,
                  _num(r[5] * r[4]), 1000, _num(r[5] / 2), _num(r[5] * r[4] / 2), "0"] for r in rows]


def _binance_funding(fake, params, fault):
    sid = params.get("symbol")
    if sid not in SYMBOLS:
        return _binance_error(-1121, "Invalid symbol.")
    limit = min(int(params.get("limit", 100)), 1000)
    start = int(params["startTime"]) if "startTime" in params else None
    end = int(params["endTime"]) if "endTime" in params else None
    rows = fake.rows(sid, "funding", start, end)
    rows = rows[-limit:] if start is None else rows[:limit]
    rows = _drop_one(rows, fault)
    return 200, [{"symbol": sid, "fundingTime": int(r[0]), "fundingRate": _num(r[1]), "markPrice": "42000.0"}
                 for r in rows]


def _binance_order(fake, params, fault):
    """A market order on the demo account: filled at the open of the 1m candle in progress on the exchange's
    clock (or its last close without a clock), taker fee 0.05 %; a ``partial`` fault fills half."""
    sid = params.get("symbol")
    if sid not in SYMBOLS or params.get("type") != "MARKET" or params.get("side") not in ("BUY", "SELL"):
        return _binance_error(-1102, "Mandatory parameter was not sent, was empty/null, or malformed.")
    qty = float(params["quantity"])
    filled = qty / 2 if fault is not None and fault.kind == "partial" else qty
    now = fake.clock() if fake.clock is not None else None
    rows = fake.rows(sid, "1m", None, now)
    price = float(rows[-1, 1] if now is not None else rows[-1, 4])
    with fake._lock:
        order_id = len(fake.orders) + 1
        order = {"orderId": order_id, "symbol": sid, "status": "FILLED" if filled == qty else "PARTIALLY_FILLED",
                 "clientOrderId": params.get("newClientOrderId", f"x-{order_id}"), "price": "0",
                 "avgPrice": _num(price), "origQty": _num(qty), "executedQty": _num(filled),
                 "cumQuote": _num(filled * price), "timeInForce": "GTC", "type": "MARKET", "reduceOnly": False,
                 "closePosition": False, "side": params["side"], "positionSide": "BOTH", "stopPrice": "0",
                 "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
                 "updateTime": now or int(time.time() * 1000), "time": now or int(time.time() * 1000)}
        fake.orders.append(order)
    return 200, order


def _binance_user_trades(fake, params, fault):
    orders = [o for o in fake.orders if o["symbol"] == params.get("symbol")
              and ("orderId" not in params or str(o["orderId"]) == params["orderId"])]
    return 200, [{"symbol": o["symbol"], "id": o["orderId"], "orderId": o["orderId"], "side": o["side"],
                  "price": o["avgPrice"], "qty": o["executedQty"], "realizedPnl": "0", "marginAsset": "USDT",
                  "quoteQty": o["cumQuote"], "commission": _num(float(o["cumQuote"]) * 0.0005),
                  "commissionAsset": "USDT", "time": o["time"], "positionSide": "BOTH", "buyer": o["side"] == "BUY",
                  "maker": False} for o in orders]


def _binance_leverage(fake, params, fault):
    fake.leverage[params.get("symbol")] = int(params.get("leverage", 1))
    return 200, {"leverage": fake.leverage[params.get("symbol")], "maxNotionalValue": "1000000",
                 "symbol": params.get("symbol")}


# ---------------------------------------------------------------------- Bybit v5

def _bybit(result: dict) -> tuple[int, dict]:
    return 200, {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)}


def _bybit_error(msg: str) -> tuple[int, dict]:
    return 200, {"retCode": 10001, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": int(time.time() * 1000)}


def _bybit_instruments(fake, params, fault):
    if params.get("category") != "linear" or params.get("status") == "PreLaunch":
        return _bybit({"category": params.get("category", ""), "list": [], "nextPageCursor": ""})
    items = [{
        "symbol": sid, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": base, "quoteCoin": "USDT",
        "settleCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0", "fundingInterval": 480,
        "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                          "minNotionalValue": "5"},
    } for sid, (base, _) in SYMBOLS.items()]
    return _bybit({"category": "linear", "list": items, "nextPageCursor": ""})


# Bybit's public risk-limit tiers (v5 /market/risk-limit), the shape of its 2024 BTCUSDT answer
BYBIT_RISK_LIMITS = [  # (riskLimitValue, maintenanceMargin, initialMargin, maxLeverage, mmDeduction)
    ("2000000", "0.005", "0.01", "100.00", ""),
    ("2600000", "0.0056", "0.0116", "86.20", "1200"),
    ("3200000", "0.0062", "0.0132", "75.75", "2760"),
]


def _bybit_risk_limit(fake, params, fault):
    sid = params.get("symbol")
    if params.get("category") != "linear" or (sid is not None and sid not in SYMBOLS):
        return _bybit_error("params error: symbol invalid")
    rows = [{"id": i + 1, "symbol": s, "riskLimitValue": cap, "maintenanceMargin": mm, "initialMargin": im,
             "isLowestRisk": int(i == 0), "maxLeverage": lev, "mmDeduction": cum}
            for s in ([sid] if sid else list(SYMBOLS)) for i, (cap, mm, im, lev, cum) in enumerate(BYBIT_RISK_LIMITS)]
    return _bybit({"category": "linear", "list": rows, "nextPageCursor": ""})


def _bybit_klines(fake, params, fault, mark=False):
    sid = params.get("symbol")
    if params.get("category") != "linear" or sid not in SYMBOLS:
        return _bybit_error("params error: symbol invalid")
    tf = BYBIT_INTERVALS.get(params.get("interval"))
    if tf is None:
        return _bybit_error("params error: interval invalid")
    limit = min(int(params.get("limit", 200)), 1000)
    start = int(params["start"]) if "start" in params else None
    end = int(params["end"]) if "end" in params else None
    rows = _window(fake.rows(sid, f"mark_{tf}" if mark else tf, start, end), limit, newest_first=True)
    rows = _drop_one(rows, fault)
    if mark:
        out = [[str(int(r[0])), _num(r[1]), _num(r[2]), _num(r[3]), _num(r[4])] for r in rows]
    else:
        out = [[str(int(r[0])), _num(r[1]), _num(r[2]), _num(r[3]), _num(r[4]), _num(r[5]), _num(r[5] * r[4])]
               for r in rows]
    return _bybit({"category": "linear", "symbol": sid, "list": out})


def _bybit_funding(fake, params, fault):
    sid = params.get("symbol")
    if params.get("category") != "linear" or sid not in SYMBOLS:
        return _bybit_error("params error: symbol invalid")
    if "startTime" in params and "endTime" not in params:
        return _bybit_error("params error: endTime is required when startTime is given")
    limit = min(int(params.get("limit", 200)), 200)
    start = int(params["startTime"]) if "startTime" in params else None
    end = int(params["endTime"]) if "endTime" in params else None
    rows = _drop_one(_window(fake.rows(sid, "funding", start, end), limit, newest_first=True), fault)
    return _bybit({"category": "linear", "list": [
        {"symbol": sid, "fundingRate": _num(r[1]), "fundingRateTimestamp": str(int(r[0]))} for r in rows]})


ROUTES = {
    "/fapi/v1/time": _binance_time,
    "/fapi/v1/exchangeInfo": _binance_exchange_info,
    "/fapi/v1/klines": _binance_klines,
    "/fapi/v1/markPriceKlines": lambda fake, p, f: _binance_klines(fake, p, f, mark=True),
    "/fapi/v1/fundingRate": _binance_funding,
    "/fapi/v1/userTrades": _binance_user_trades,
    "/v5/market/instruments-info": _bybit_instruments,
    "/v5/market/kline": _bybit_klines,
    "/v5/market/mark-price-kline": lambda fake, p, f: _bybit_klines(fake, p, f, mark=True),
    "/v5/market/funding/history": _bybit_funding,
    "/v5/market/risk-limit": _bybit_risk_limit,
}


class AcceleratedClock:
    """An exchange clock that starts at ``start`` (epoch ms) and runs ``speed`` times faster than real time:
    ``AcceleratedClock(start, speed=300)`` closes one 1m candle every 0.2 s."""

    def __init__(self, start_ms: int, speed: float):
        self.start_ms, self.speed = int(start_ms), float(speed)
        self._t0 = time.monotonic()

    def __call__(self) -> int:
        return self.start_ms + int((time.monotonic() - self._t0) * 1000 * self.speed)


POST_ROUTES = {
    "/fapi/v1/order": _binance_order,
    "/fapi/v1/leverage": _binance_leverage,
}


def source_frame(symbol_id: str, what: str, start: str, end: str) -> pd.DataFrame:
    """What the exchange serves for ``what`` (``"1h"``, ``"mark_1h"``, ``"funding"``) in ``[start, end)``, indexed
    like the store (UTC ``timestamp``): the frame a correct download must reproduce exactly."""
    suffix = "funding_8h" if what == "funding" else what
    df = sample_frame(SYMBOLS[symbol_id][1], suffix)
    index = pd.DatetimeIndex(pd.to_datetime(df["timestamp"], unit="ms", utc=True), name="timestamp").as_unit("ms")
    out = df.drop(columns="timestamp").set_axis(index)
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    return out[(out.index >= lo) & (out.index < hi)].astype("float64")


# ---------------------------------------------------------------------- Binance USDT-M kline websocket


class KlineStream:
    """Binance USDT-M's kline stream (``<symbol>@kline_<interval>``) on 127.0.0.1, driven by the fake's clock.

    After a client's ``SUBSCRIBE`` (answered ``{"result": null, "id": N}``), every ``tick`` real seconds it sends the
    forming candle (provisional values, ``"x": false``); when the clock enters a new bar it first sends the final
    values of the bar that just closed (``"x": true``), as Binance does. Faults on endpoint ``"ws_kline"``, taken at
    each bar change: ``duplicate`` sends that final kline again after the next bar's first update, ``late`` sends
    the final kline of two bars back, ``drop`` closes the socket before the final kline (it is lost) and refuses
    new connections for ``fault.delay`` real seconds. :meth:`drop` does the same on demand.
    """

    def __init__(self, fake: FakeExchange, tick: float = 0.02):
        self.fake, self.tick = fake, tick
        self.port: int | None = None
        self.connections = 0            # successful websocket handshakes
        self.drops = 0                  # sockets closed by the server
        self.refused = 0                # handshakes refused while "down"
        self._refuse_until = 0.0
        self._sockets: set = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None

    def start(self) -> None:
        from aiohttp import web

        ready = threading.Event()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, handle_signals=False)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        threading.Thread(target=main, daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the fake kline stream did not start")

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        await self._runner.cleanup()

    def drop(self, down_seconds: float = 0.0) -> None:
        """Close every open socket now and refuse new connections for ``down_seconds`` (real time)."""
        async def close_all():
            self._refuse_until = time.monotonic() + down_seconds
            for ws in list(self._sockets):
                self.drops += 1
                await ws.close()
        asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(10)

    async def _handle(self, request):
        from aiohttp import WSMsgType, web

        if time.monotonic() < self._refuse_until:
            self.refused += 1
            return web.Response(status=503, text="503 Service Temporarily Unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._sockets.add(ws)
        senders = []
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if data.get("method") == "SUBSCRIBE":
                    await ws.send_str(json.dumps({"result": None, "id": data.get("id")}))
                    for stream in data.get("params", []):
                        senders.append(asyncio.create_task(self._send_klines(ws, stream)))
        finally:
            for task in senders:
                task.cancel()
            self._sockets.discard(ws)
        return ws

    def _kline(self, sid: str, tf: str, t: int, closed: bool) -> str | None:
        rows = self.fake.rows(sid, tf, t, t)
        if not len(rows):
            return None
        r, step = rows[0], STEP_MS[tf]
        k = {"t": int(r[0]), "T": int(r[0]) + step - 1, "s": sid, "i": tf, "f": 0, "L": 0, "o": _num(r[1]),
             "c": _num(r[4]), "h": _num(r[2]), "l": _num(r[3]), "v": _num(r[5]), "n": 1000, "x": closed,
             "q": _num(r[5] * r[4]), "V": _num(r[5] / 2), "Q": _num(r[5] * r[4] / 2), "B": "0"}
        return json.dumps({"e": "kline", "E": self.fake.clock(), "s": sid, "k": k}, separators=(",", ":"))

    async def _send_klines(self, ws, stream: str) -> None:
        market, _, channel = stream.partition("@")
        sid, tf = market.upper(), channel.removeprefix("kline_")
        step = STEP_MS[tf]
        sent: int | None = None
        while not ws.closed:
            t = self.fake.clock() // step * step
            later: list[str | None] = []
            if sent is not None and t > sent:
                fault = self.fake._take_fault("ws_kline", {"symbol": sid})
                if fault is not None and fault.kind == "drop":
                    self._refuse_until = time.monotonic() + fault.delay
                    self.drops += 1
                    await ws.close()
                    return
                final = self._kline(sid, tf, sent, True)
                if final:
                    await ws.send_str(final)
                if fault is not None and fault.kind == "duplicate":
                    later.append(final)
                elif fault is not None and fault.kind == "late":
                    later.append(self._kline(sid, tf, sent - step, True))
            forming = self._kline(sid, tf, t, False)
            if forming:
                await ws.send_str(forming)
            for text in later:
                if text:
                    await ws.send_str(text)
            sent = t
            await asyncio.sleep(self.tick)
