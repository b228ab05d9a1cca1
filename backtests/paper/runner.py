"""Paper trading: the backtested strategy class, unchanged, on live closed candles, with simulated fills.

How a bar is handled (one :meth:`PaperRunner.step`):

1. poll the exchange (:class:`~backtests.paper.source.LiveSource`) for candles that closed since the last one held,
   plus funding settlements and mark candles; duplicates and late copies are dropped; after a disconnect or a
   restart every missed candle is backfilled here, before any decision;
2. decide: the strategy class runs exactly as in a backtest (the same ``prepare``, model trained on bars before
   the paper start, the same ``target()``) over every bar since the paper start, and its target at the newest
   closed bar is the decision;
3. execute: the decision of the newest bar is sent; it fills at the next bar's open with the backtest's broker
   model (fees, slippage, funding, liquidation). A decision whose bar was already followed by another closed bar
   when the runner learned of it (the runner was disconnected or stopped) could only have filled in the past:
   it is recorded as *missed* and not executed;
4. account: the executed decisions are replayed through the same engine and broker
   (:func:`follow_targets`), giving positions, fills and equity; with no missed bar they equal a backtest of the
   same bars exactly;
5. save: candles, decisions and state are written atomically into the run folder, so a restart resumes; the
   report (paper run and a backtest of the same bars side by side) is refreshed.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from backtests.config import BacktestConfig
from backtests.result import BacktestResult
from data_feeds import MarketData, find_gaps
from data_feeds.files import atomic_path, atomic_write
from data_feeds.retry import GiveUp, RetryPolicy, describe_error
from data_feeds.timeframes import timeframe_delta
from strategies.base import TargetPositionStrategy
from backtests.paper.orders import DEMO_FILL_COLUMNS, DemoAccount
from backtests.paper.source import LiveSource, Polled, empty_candles

Progress = Callable[[str], None]
STATE_FILE = "paper.json"
DECISION_COLUMNS = ["time", "strategy_target", "executed_target", "missed", "note", "decided_at"]
"""One row per paper bar: the strategy's target at its close (NaN while the strategy is not ready), the target
actually executed at the next open, whether the decision came too late to execute, why it deviates, and when
(exchange clock) it was made."""
FAR_END = "2100-01-01"


class PaperError(ValueError):
    """A paper run that cannot start or resume (bad folder, a config that differs from the saved one...)."""


def follow_targets(executed: pd.Series) -> type[TargetPositionStrategy]:
    """A strategy class that trades to ``executed`` (a target per bar of the span, in [-1, 1]) through the same
    sizing and order path as every strategy: how the paper account replays the decisions it really executed."""

    values = executed.to_numpy("float64")
    requested: dict[int, float] = {}

    class FollowTargets(TargetPositionStrategy):
        sizes = requested  # bar number -> position size ordered at that bar's close (filled at the next open)

        def target(self) -> float:
            return float(values[len(self) - 1])

        def order_target_size(self, data=None, target=0, **kwargs):
            requested[len(self) - 1] = float(target)
            return super().order_target_size(data=data, target=target, **kwargs)

    return FollowTargets


def read_decisions(path: Path) -> pd.DataFrame:
    """``decisions.csv`` as written by the runner (times UTC, ``note`` text, ``missed`` bool)."""
    frame = pd.read_csv(path, keep_default_na=False, na_values={"strategy_target": [""]})
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    frame["missed"] = frame["missed"].astype(str).str.lower().eq("true")
    return frame[DECISION_COLUMNS]


def paper_account(config: BacktestConfig, market: MarketData, decisions: pd.DataFrame,
                  index: pd.DatetimeIndex) -> BacktestResult:
    """The paper account: the executed decisions (``decisions.csv`` rows) replayed through the engine and broker
    over the bars of ``index`` (a bar without a decision keeps the previous one; flat before the first)."""
    from backtests.engine import run_backtest

    executed = pd.Series(decisions["executed_target"].to_numpy("float64"),
                         index=pd.DatetimeIndex(pd.to_datetime(decisions["time"], utc=True)))
    executed = executed.reindex(index).ffill().fillna(0.0)
    follower = follow_targets(executed)
    account = run_backtest(config, strategy=follower, market=market)
    account.name = account.strategy = f"paper {config.strategy}"
    pending = follower.sizes.get(len(index) - 1)
    account.extras["pending_size"] = pending  # ordered at the last close, fills at the next open (None: no order)
    return account


@dataclass
class PaperState:
    """What a paper run knows between bars; saved as ``paper.json`` after every bar."""

    exchange: str
    symbol: str
    timeframe: str
    start: str                      # first bar traded on paper (ISO UTC)
    config: dict                    # the BacktestConfig as plain data
    last_bar: str | None = None     # newest closed bar held (ISO UTC)
    bars: int = 0                   # paper bars held
    position: float = 0.0           # contracts at the last bar's close
    equity: float = 0.0             # account value at the last bar's close (USDT)
    pending_target: float = 0.0     # the last executed decision, filled at the next bar's open
    missed: int = 0                 # decisions that came too late to execute
    ignored: int = 0                # duplicate or late candles dropped
    disconnects: int = 0
    models: list = field(default_factory=list)
    feed: str = "rest"              # where new candles come from: "rest" polling or the "ws" kline stream
    status: str = "running"
    updated: str = ""

    def save(self, folder: Path) -> None:
        atomic_write(folder / STATE_FILE, json.dumps(self.__dict__, indent=2, sort_keys=True))

    @classmethod
    def load(cls, folder: Path) -> "PaperState":
        path = folder / STATE_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise PaperError(f"{path}: not a readable paper state ({describe_error(exc)})") from None


class PaperRunner:
    """Runs ``config``'s strategy on live candles from ``exchange`` (a ccxt object) into ``folder``.

    A folder that already holds a paper run is resumed (its saved config must match). ``poll_seconds``: the wait
    between polls when no new candle has closed (default a tenth of the bar, at most 5 s). ``history_bars``
    extra bars before the start are fetched for indicator warm-up (the strategy's own ``history_bars`` are always
    fetched). ``report_every``: refresh the report every N bars (0: only at the end; None: never, the files of
    ``paper reconcile`` and ``paper status`` are still written). ``stream``: a ``ccxt.pro`` client (see
    :func:`~backtests.paper.stream.make_stream_exchange`) to take new candles from its kline stream (``--feed ws``)
    instead of polling REST.
    """

    def __init__(self, config: BacktestConfig, folder: str | Path, exchange, *, progress: Progress | None = None,
                 poll_seconds: float | None = None, history_bars: int = 0, report_every: int | None = 1,
                 reconnect: RetryPolicy | None = None, request_policy: RetryPolicy | None = None,
                 demo: DemoAccount | None = None, stream=None):
        from backtests.engine import strategy_class

        self.config, self.folder = config, Path(folder)
        self.progress = progress or (lambda line: None)
        self.cls = strategy_class(config.strategy)
        self.step_delta = timeframe_delta(config.data.timeframe)
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(self.step_delta.total_seconds() / 10, 5.0)
        self.extra_history = history_bars
        self.report_every = report_every
        self.reconnect = reconnect or RetryPolicy(max_attempts=1_000_000, max_elapsed=float("inf"), base_delay=1.0,
                                                  max_delay=60.0)
        if stream is None:   # --feed rest: poll REST for closed candles
            self.source = LiveSource(exchange, config.data.symbol, config.data.timeframe, policy=request_policy,
                                     on_retry=self._on_retry)
        else:                # --feed ws: ccxt.pro's kline stream, REST for history, gaps, funding and mark
            from backtests.paper.stream import StreamSource

            self.source = StreamSource(exchange, stream, config.data.symbol, config.data.timeframe,
                                       policy=request_policy, on_retry=self._on_retry, reconnect=self.reconnect,
                                       progress=self.progress, resync_seconds=self.poll_seconds)
        self.feed = "rest" if stream is None else "ws"
        # with the stream, a look at its buffer costs no request: look often; poll_seconds paces the clock checks
        self.look_seconds = self.poll_seconds if stream is None else min(self.poll_seconds, 0.1)
        self._drops_seen = 0
        self.demo = demo
        self._stop = threading.Event()
        self.state: PaperState | None = None
        self.candles = empty_candles()
        self.funding = pd.DataFrame(columns=["funding_rate"], dtype="float64")
        self.mark: pd.DataFrame | None = None
        self.decisions = pd.DataFrame(columns=DECISION_COLUMNS)
        self.account: BacktestResult | None = None
        self.backtest: BacktestResult | None = None

    # ------------------------------------------------------------------ life cycle

    def stop(self) -> None:
        """Ask the loop to stop after the bar in progress (what SIGINT does)."""
        self._stop.set()

    def run(self, *, max_bars: int | None = None, until: pd.Timestamp | None = None) -> PaperState:
        """Start or resume, then handle bars until stopped (SIGINT, :meth:`stop`), ``max_bars`` new bars have been
        handled, or the exchange's clock passes ``until``. Returns the saved state."""
        handler = None
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, lambda *_: self.stop())
        try:
            self.open()
            done = 0
            failures = 0
            while not self._stop.is_set():
                try:
                    new = self.step()
                    failures = 0
                except GiveUp as exc:
                    wait = self.reconnect.delay(failures, np.random.default_rng(failures))
                    failures += 1
                    self.state.disconnects += 1
                    self.progress(f"paper: exchange unreachable ({exc}); reconnecting in {wait:.1f} s")
                    self._sleep(wait)
                    self._resync()
                    continue
                done += new
                if max_bars is not None and done >= max_bars:
                    break
                if until is not None and self.source.now_ms() >= until.value // 1_000_000:
                    break
                if not new:
                    self._sleep(self.look_seconds)
        finally:
            self.source.close()
            if handler is not None:
                signal.signal(signal.SIGINT, handler)
        self.state.status = "stopped"
        self._save(report=self.report_every is not None)
        self.progress(f"paper: stopped at {self.state.last_bar}; state saved in {self.folder / STATE_FILE}")
        return self.state

    def open(self) -> PaperState:
        """Connect, then load the saved run from the folder or start a new one (history fetched up to now)."""
        try:
            self.source.connect()
            if (self.folder / STATE_FILE).exists():
                self._resume()
            else:
                self._start_new()
        except GiveUp as exc:
            raise PaperError(f"{self.config.data.exchange}: cannot reach the exchange ({exc})") from None
        self.state.status = "running"
        self.state.feed = self.feed
        return self.state

    def _start_new(self) -> None:
        if self.folder.exists() and any(self.folder.iterdir()):
            raise PaperError(f"{self.folder} is not empty and holds no paper run; choose a new --out folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # the start is the first bar that closes after the model is ready
            self.source.sync_clock()
            last_closed = pd.Timestamp(self.source.last_closed_open_ms(), unit="ms", tz="UTC")
            start = last_closed + self.step_delta  # the first bar that closes after the start is traded on paper
            run_config = self._run_config(start)
            if attempt == 0 or not len(self.candles):
                history = self.cls.history_bars(run_config) + self.extra_history
                first = start - history * self.step_delta
                self.progress(f"paper: {self.config.strategy} on {self.config.data.exchange} "
                              f"{self.config.data.symbol} {self.config.data.timeframe}; fetching {history:,} bars of "
                              f"history from {first:%Y-%m-%d %H:%M}")
                self._append(self.source.poll(None, first))
            else:
                self._append(self.source.poll(self.candles.index[-1], first))
            if not self._pretrain(run_config, start):
                break
            self.source.sync_clock()
            if self.source.last_closed_open_ms() < start.value // 1_000_000:
                break
            self.progress("paper: the start bar closed while the model was prepared; starting at a later bar")
        self.state = PaperState(self.config.data.exchange, self.config.data.symbol, self.config.data.timeframe,
                                start.isoformat(), run_config.to_dict(), equity=self.config.broker.cash)
        self.state.last_bar = self.candles.index[-1].isoformat() if len(self.candles) else None
        self._save(report=False)
        self.progress(f"paper: trading from the bar opening {start:%Y-%m-%d %H:%M} UTC; run folder {self.folder}")

    def _pretrain(self, run_config: BacktestConfig, start: pd.Timestamp) -> bool:
        """Fit (or load from the cache) the strategy's model on the history before ``start`` now, so the first
        decision does not wait for training: ``prepare`` is called as a backtest starting at ``start`` would call
        it, on the history plus one provisional bar at ``start`` (models train strictly before the span, so that
        bar is never learnt from; the first decision's ``prepare`` then finds the same model in the cache).
        A walk-forward model is refitted on schedule by the decisions themselves. Returns whether it prepared."""
        if self.cls.history_bars(run_config) == 0 or not len(self.candles):
            return False  # no model to fit
        from backtests.engine import prepare_strategy

        last = self.candles.iloc[-1]
        provisional = pd.DataFrame([[last["close"]] * 4 + [0.0]], columns=self.candles.columns,
                                   index=pd.DatetimeIndex([start], name=self.candles.index.name).as_unit(
                                       self.candles.index.unit))
        market = dataclasses.replace(self.market(), candles=pd.concat([self.candles, provisional]))
        started = time.perf_counter()
        try:
            prepare_strategy(self.cls, run_config, market, start, None)
        except ValueError as exc:
            self.progress(f"paper: the model is fitted at the first bar instead ({exc})")
            return False
        self.progress(f"paper: {self.config.strategy} prepared on the history before the start "
                      f"in {time.perf_counter() - started:.1f} s")
        return True

    def _resume(self) -> None:
        self.state = PaperState.load(self.folder)
        saved = dict(self.state.config)
        wanted = self._run_config(pd.Timestamp(self.state.start)).to_dict()
        for key in ("strategy", "params", "model", "broker", "seed", "fraction"):
            if saved.get(key) != wanted.get(key):
                raise PaperError(f"{self.folder} was started with another {key} ({saved.get(key)!r}); "
                                 f"resume with the same config or choose a new --out folder")
        for kind in ("candles", "funding", "mark"):
            path = self.folder / "data" / f"paper_{kind}.parquet"
            if path.exists():
                frame = pd.read_parquet(path)
                setattr(self, kind, frame)
        demo_fills = self.folder / "demo_fills.csv"
        if self.demo is not None and demo_fills.exists():
            self.demo.position = float(pd.read_csv(demo_fills)["filled"].sum())
        decisions = self.folder / "decisions.csv"
        if decisions.exists():
            self.decisions = read_decisions(decisions)
        self.progress(f"paper: resuming {self.folder} after bar {self.state.last_bar} ({self.state.bars} paper bars)")

    # ------------------------------------------------------------------ one bar

    def step(self) -> int:
        """One poll: handle every candle closed since the last one held; returns how many were new."""
        last = pd.Timestamp(self.state.last_bar) if self.state.last_bar else None
        polled = self.source.poll(last, pd.Timestamp(self.state.start))
        drops = getattr(self.source, "drops", 0)
        self.state.disconnects += drops - self._drops_seen
        self._drops_seen = drops
        self.state.ignored += polled.ignored
        if polled.ignored:
            self.progress(f"paper: ignored {polled.ignored} duplicate or late candle(s)")
        self._append(polled)
        new = polled.candles.index[polled.candles.index >= pd.Timestamp(self.state.start)]
        if not len(new):
            return 0
        self._decide(new)
        self._save(report=bool(self.report_every) and self.state.bars % self.report_every == 0)
        return len(new)

    def _decide(self, new: pd.DatetimeIndex) -> None:
        from backtests.engine import run_backtest

        start = pd.Timestamp(self.state.start)
        run_config = self._run_config(start)
        market = self.market()
        try:
            self.backtest = run_backtest(run_config, market=market)
        except ValueError as exc:  # e.g. "sma_cross needs at least slow=50 bars in the span": not ready yet
            if len(self.decisions) and self.decisions["executed_target"].astype(float).any():
                raise
            self._warming_up(new, str(exc))
            return
        wanted = self.backtest.target
        decided_at = pd.Timestamp(self.source.now_ms(), unit="ms", tz="UTC").isoformat()
        previous = float(self.decisions["executed_target"].iloc[-1]) if len(self.decisions) else 0.0
        rows = []
        for i, t in enumerate(new):
            missed = i < len(new) - 1   # a newer bar had closed already: this decision's next open is past
            executed = previous if missed else float(wanted.loc[t])
            rows.append({"time": t, "strategy_target": float(wanted.loc[t]), "executed_target": executed,
                         "missed": missed, "note": "missed" if missed else "", "decided_at": decided_at})
            previous = executed
        rows = pd.DataFrame(rows, columns=DECISION_COLUMNS)
        self.decisions = pd.concat([self.decisions, rows], ignore_index=True) if len(self.decisions) else rows
        self.account = self._account(run_config, market)
        self.backtest.name = self.backtest.strategy = f"backtest {self.config.strategy}"
        st = self.state
        st.bars = len(self.decisions)
        st.missed = int(self.decisions["missed"].sum())
        st.last_bar = new[-1].isoformat()
        st.position = float(self.account.position.iloc[-1])
        st.equity = float(self.account.equity.iloc[-1])
        st.pending_target = float(self.decisions["executed_target"].iloc[-1])
        st.models = [dict(m) for m in self.backtest.models]  # the model id(s) deciding: name, weights sha256...
        pending = self.account.extras.get("pending_size")
        if self.demo is not None and pending is not None and not self.decisions["missed"].iloc[-1]:
            self._send_demo_order(pending, new[-1] + self.step_delta)
        if len(new) > 1:
            self.progress(f"paper: backfilled {len(new)} bars up to {new[-1]:%Y-%m-%d %H:%M}; "
                          f"{len(new) - 1} decision(s) came too late to execute (missed)")
        close = float(self.candles["close"].iloc[-1])
        self.progress(f"paper: {new[-1]:%Y-%m-%d %H:%M} close {close:,.2f} target {st.pending_target:+g} "
                      f"position {st.position:+.6g} equity {st.equity:,.2f}")

    def _account(self, run_config: BacktestConfig, market: MarketData) -> BacktestResult:
        """The paper account. When every executed target equals the backtest's target at its bar (no missed
        decision) and no demo order needs the size ordered at the last close, it *is* the backtest (the same
        targets through the same sizing and broker), so the second run over the span is skipped."""
        index = self.backtest.target.index
        executed = pd.Series(self.decisions["executed_target"].to_numpy("float64"),
                             index=pd.DatetimeIndex(pd.to_datetime(self.decisions["time"], utc=True)))
        executed = executed.reindex(index).ffill().fillna(0.0).to_numpy()
        if self.demo is None and np.array_equal(executed, self.backtest.target.to_numpy("float64")):
            name = f"paper {self.config.strategy}"
            return dataclasses.replace(self.backtest, name=name, strategy=name,
                                       extras={**self.backtest.extras, "pending_size": None})
        return paper_account(run_config, market, self.decisions, index)

    def _warming_up(self, new: pd.DatetimeIndex, why: str) -> None:
        """The strategy refuses a span this short (a backtest of these bars would be refused too): stay flat."""
        decided_at = pd.Timestamp(self.source.now_ms(), unit="ms", tz="UTC").isoformat()
        rows = pd.DataFrame({"time": new, "strategy_target": np.nan, "executed_target": 0.0, "missed": False,
                             "note": "not ready", "decided_at": decided_at}, columns=DECISION_COLUMNS)
        self.decisions = pd.concat([self.decisions, rows], ignore_index=True) if len(self.decisions) else rows
        self.state.bars, self.state.last_bar = len(self.decisions), new[-1].isoformat()
        self.progress(f"paper: {new[-1]:%Y-%m-%d %H:%M} flat, strategy not ready yet ({why})")

    def _send_demo_order(self, size: float, bar: pd.Timestamp) -> None:
        """The decision as a real market order on the demo account, recorded in ``demo_fills.csv``."""
        fill = self.demo.trade_to(size, bar)
        if fill is None:
            return
        path = self.folder / "demo_fills.csv"
        old = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=DEMO_FILL_COLUMNS)
        rows = pd.concat([old, pd.DataFrame([fill], columns=DEMO_FILL_COLUMNS)], ignore_index=True) if len(old) \
            else pd.DataFrame([fill], columns=DEMO_FILL_COLUMNS)
        atomic_write(path, rows.to_csv(index=False))
        self.progress(f"paper: demo order {fill['order_id']}: {fill['filled']:+.6g} of {fill['requested']:+.6g} at "
                      f"{fill['price']:,.2f}, fee {fill['fee']:.4f} ({fill['status']})")

    # ------------------------------------------------------------------ data and files

    def market(self) -> MarketData:
        """Everything held so far (history and paper bars) as the engine's market data."""
        mark = self.mark if self.mark is not None and len(self.mark) else None
        return MarketData(self.config.data.exchange, self.config.data.symbol, self.config.data.timeframe,
                          self.candles, self.funding, mark, f"live {self.config.data.exchange}",
                          find_gaps(self.candles.index, self.config.data.timeframe))

    def _append(self, polled: Polled) -> None:
        def merged(old, new):
            if old is None or not len(old):
                return new
            if new is None or not len(new):
                return old
            both = pd.concat([old, new])
            return both[~both.index.duplicated(keep="first")].sort_index()

        self.candles = merged(self.candles, polled.candles)
        self.funding = merged(self.funding, polled.funding)
        if polled.mark is not None:
            self.mark = merged(self.mark, polled.mark)

    def _run_config(self, start: pd.Timestamp) -> BacktestConfig:
        return self.config.replace(data={"start": start.strftime("%Y-%m-%dT%H:%M"), "end": FAR_END},
                                   baselines=())

    def _save(self, *, report: bool) -> None:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        for kind in ("candles", "funding", "mark"):
            frame = getattr(self, kind)
            if frame is not None:
                with atomic_path(data / f"paper_{kind}.parquet") as tmp:
                    frame.to_parquet(tmp)
        if len(self.decisions):
            atomic_write(self.folder / "decisions.csv", self.decisions.to_csv(index=False))
        self.state.updated = pd.Timestamp.now(tz="UTC").isoformat()
        if report and self.account is not None:
            self._write_report()
        self.state.save(self.folder)

    def _write_report(self) -> None:
        from backtests.persist import write_run_folder

        write_run_folder(self.folder / "report", self.account, [self.backtest])
        if self.account is not None:
            atomic_write(self.folder / "equity.csv", self.account.equity.to_csv())
            atomic_write(self.folder / "fills.csv", self.account.fills.to_csv(index=False))

    # ------------------------------------------------------------------ plumbing

    def _on_retry(self, error: BaseException, wait: float) -> None:
        self.progress(f"paper: {describe_error(error)}; retrying in {wait:.1f} s")

    def _resync(self) -> None:
        try:
            self.source.sync_clock()
        except GiveUp:
            pass

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)
