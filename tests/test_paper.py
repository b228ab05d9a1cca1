"""Paper trading against a fake exchange on loopback whose clock runs fast (a 1m candle closes every 0.8 s):
the paper run equals a backtest of the same bars across duplicates, late candles and a disconnect; a restart
resumes and every difference it causes is explained; SIGINT stops the CLI cleanly; status and reconcile work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from backtests.cli import main
from backtests.config import BacktestConfig, DataConfig
from backtests.paper import PaperError, PaperRunner, reconcile
from backtests.paper.orders import DemoAccount, DemoRefused, enable_demo
from data_feeds.exchange import make_exchange
from data_feeds.retry import RetryPolicy
from fake_exchange import AcceleratedClock, Fault, FakeExchange, source_frame

ROOT = Path(__file__).resolve().parent.parent
START = "2025-05-10 00:00:30"
SPEED = 75.0  # exchange seconds per real second: one 1m candle every 0.8 s
QUICK = RetryPolicy(max_attempts=3, base_delay=0.02, max_delay=0.05, max_elapsed=5)
RECONNECT = RetryPolicy(max_attempts=1000, base_delay=0.05, max_delay=0.1, max_elapsed=60)


def clock(start: str = START, speed: float = SPEED) -> AcceleratedClock:
    return AcceleratedClock(int(pd.Timestamp(start, tz="UTC").value // 1_000_000), speed)


def sma_config() -> BacktestConfig:
    return BacktestConfig(name="paper-test", strategy="sma_cross", params={"fast": 2, "slow": 4},
                          data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1m"))


def runner(fake: FakeExchange, folder: Path, lines: list[str] | None = None) -> PaperRunner:
    exchange = make_exchange("binanceusdm", fake.ccxt_config("binanceusdm"))
    return PaperRunner(sma_config(), folder, exchange, progress=(lines.append if lines is not None else None),
                       poll_seconds=0.05, history_bars=5, report_every=None, reconnect=RECONNECT, request_policy=QUICK)


def test_paper_run_equals_a_backtest_of_the_same_bars_across_duplicates_late_candles_and_a_disconnect(tmp_path):
    faults = [Fault("duplicate", "klines", skip=2, times=2), Fault("late", "klines", skip=3, times=1),
              Fault("drop", "klines", skip=3, times=4)]  # 4 drops > 3 attempts: the runner reconnects
    lines: list[str] = []
    with FakeExchange(faults=faults, clock=clock()) as fake:
        state = runner(fake, tmp_path / "run", lines).run(max_bars=10)
    assert state.bars >= 10 and state.disconnects >= 1 and state.ignored >= 1
    assert any("reconnecting" in line for line in lines)
    result = reconcile(tmp_path / "run")
    assert result.differences.empty, result.differences
    assert len(result.paper.fills) > 0  # it traded
    assert result.paper.equity.iloc[-1] == pytest.approx(state.equity, abs=1e-9)
    # only closed candles, exactly as the exchange finally published them (never the provisional forming candle)
    held = pd.read_parquet(tmp_path / "run" / "data" / "paper_candles.parquet")
    truth = source_frame("BTCUSDT", "1m", str(held.index[0]), str(held.index[-1] + pd.Timedelta(minutes=1)))
    pd.testing.assert_frame_equal(held, truth, check_freq=False, check_index_type=False)


def test_a_restart_resumes_the_run_and_reconcile_explains_the_missed_bars(tmp_path):
    folder = tmp_path / "run"
    with FakeExchange(clock=clock()) as fake:
        first = runner(fake, folder).run(max_bars=6)
        time.sleep(4 * 60 / SPEED)  # the runner is down for about four bars
        lines: list[str] = []
        second = runner(fake, folder, lines).run(max_bars=3)
    assert any("resuming" in line for line in lines) and any("backfilled" in line for line in lines)
    assert second.bars >= first.bars + 3 and second.missed >= 2 and second.start == first.start
    decisions = pd.read_csv(folder / "decisions.csv")
    assert decisions["time"].is_unique and len(decisions) == second.bars
    result = reconcile(folder)
    assert not (result.table["cause"] == "unexplained").any()
    # every bar before the first missed decision agrees with the backtest
    first_missed = pd.Timestamp(decisions.loc[decisions["missed"], "time"].iloc[0])
    assert not result.table.loc[result.table.index < first_missed, "differs"].any()


def test_resuming_with_another_strategy_config_is_refused(tmp_path):
    folder = tmp_path / "run"
    with FakeExchange(clock=clock()) as fake:
        runner(fake, folder).run(max_bars=1)
        exchange = make_exchange("binanceusdm", fake.ccxt_config("binanceusdm"))
        other = sma_config().replace(params={"fast": 3, "slow": 5})
        with pytest.raises(PaperError, match="another params"):
            PaperRunner(other, folder, exchange, request_policy=QUICK).open()


def test_cli_paper_stops_cleanly_on_sigint_then_status_and_reconcile_work(tmp_path, capsys):
    """Through the CLI with ``--feed ws``: SIGINT also closes the websocket thread cleanly."""
    with FakeExchange(clock=clock(), websocket=True) as fake:
        config = tmp_path / "exchange.json"
        config.write_text(json.dumps(fake.ccxt_config("binanceusdm")))
        out = tmp_path / "run"
        toml = tmp_path / "sma.toml"
        toml.write_text('name = "sma-paper"\nstrategy = "sma_cross"\n[params]\nfast = 2\nslow = 4\n'
                        '[data]\nexchange = "binanceusdm"\nsymbol = "BTC/USDT:USDT"\ntimeframe = "1m"\n')
        cmd = [sys.executable, "-m", "backtests.cli", "paper", "--config", str(toml), "--exchange-config", str(config),
               "--out", str(out), "--poll", "0.05", "--report-every", "0", "--feed", "ws"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        decisions = out / "decisions.csv"
        while time.monotonic() < deadline and not (decisions.exists() and len(decisions.read_text().splitlines()) > 5):
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped at" in stdout
    state = json.loads((out / "paper.json").read_text())
    assert state["status"] == "stopped" and state["bars"] >= 1 and state["feed"] == "ws"
    assert (out / "report" / "report.html").exists()
    assert main(["paper", "status", str(out)]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["paper", "reconcile", str(out)]) == 0
    printed = capsys.readouterr().out   # exit 0: every difference (if the loaded machine missed a bar) explained
    assert "final equity" in printed and (out / "reconcile.csv").exists()


@pytest.mark.parametrize("argv, message", [
    (["paper", "status"], "usage: lstmbt paper status RUN_DIR"),
    (["paper", "stats", "x"], "unknown paper action 'stats'"),
    (["paper", "status", "/nonexistent/run"], "not a readable paper state"),
    (["paper", "reconcile", "/nonexistent/run"], "no paper run here"),
    (["paper", "--strategy", "nope", "--max-bars", "1"], "unknown strategy"),
])
def test_paper_cli_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_demo_orders_go_to_the_demo_account_and_reconcile_names_partial_fills_and_slippage(tmp_path):
    folder = tmp_path / "run"
    env = {"LSTMBT_BINANCEUSDM_API_KEY": "demo-key", "LSTMBT_BINANCEUSDM_SECRET": "demo-secret"}
    with FakeExchange(faults=[Fault("partial", "order", skip=1, times=1)], clock=clock()) as fake:
        options = fake.ccxt_config("binanceusdm", demo=True)
        orders = DemoAccount(make_exchange("binanceusdm", options, environ=env), "BTC/USDT:USDT", policy=QUICK)
        orders.set_leverage(2)
        market = make_exchange("binanceusdm", fake.ccxt_config("binanceusdm"))
        PaperRunner(sma_config(), folder, market, poll_seconds=0.05, history_bars=5, report_every=None,
                    reconnect=RECONNECT, request_policy=QUICK, demo=orders).run(max_bars=10)
        sent = list(fake.orders)
        assert fake.leverage == {"BTCUSDT": 2}
    assert len(sent) >= 2 and sent[1]["status"] == "PARTIALLY_FILLED"
    fills = pd.read_csv(folder / "demo_fills.csv")
    assert len(fills) == len(sent) and orders.position == pytest.approx(fills["filled"].sum())
    result = reconcile(folder)
    assert "partial fill" in result.demo["cause"].iloc[1]
    held = result.demo[~result.demo["cause"].str.startswith("pending")]
    assert len(held) >= 2 and held["cause"].str.contains("slippage").all()  # demo fills at the open; simulated +1 bp
    assert not result.demo["cause"].str.contains("no simulated fill").any()
    assert any(line.startswith("demo orders:") for line in result.summary())


def test_demo_mode_refuses_missing_keys_and_non_demo_order_hosts(tmp_path):
    with pytest.raises(DemoRefused, match="API_KEY"):
        DemoAccount(make_exchange("binanceusdm", environ={}), "BTC/USDT:USDT")
    keys = {"LSTMBT_BINANCEUSDM_API_KEY": "k", "LSTMBT_BINANCEUSDM_SECRET": "s"}
    live = {"urls": {"demo": {"fapiPrivate": "https://fapi.binance.com/fapi/v1"}}}  # a real-money host as "demo"
    with pytest.raises(DemoRefused, match="fapi.binance.com"):
        enable_demo(make_exchange("binanceusdm", live, environ=keys))


def test_websocket_feed_equals_a_backtest_across_a_socket_drop_duplicate_and_late_klines(tmp_path):
    """--feed ws: ccxt.pro's kline stream from the fake's websocket; the socket is closed mid-run just before a
    bar's final kline (that bar comes from REST), one final kline is sent twice and an old one late."""
    from backtests.paper.stream import make_stream_exchange

    faults = [Fault("duplicate", "ws_kline", skip=2), Fault("late", "ws_kline", skip=3),
              Fault("drop", "ws_kline", skip=5, delay=0.3)]
    lines: list[str] = []
    with FakeExchange(faults=faults, clock=clock(), websocket=True) as fake:
        options = fake.ccxt_config("binanceusdm")
        paper = PaperRunner(sma_config(), tmp_path / "run", make_exchange("binanceusdm", options),
                            progress=lines.append, poll_seconds=0.05, history_bars=5, report_every=None,
                            reconnect=RECONNECT, request_policy=QUICK,
                            stream=make_stream_exchange("binanceusdm", options))
        state = paper.run(max_bars=10)
        assert fake.stream.connections >= 2 and fake.stream.drops == 1
    assert state.feed == "ws" and state.disconnects >= 1 and any("websocket down" in line for line in lines)
    assert paper.source.streamed >= 5 and paper.source.backfilled >= 1  # the bar whose final kline was lost
    result = reconcile(tmp_path / "run")
    assert result.differences.empty, result.differences
    assert len(result.paper.fills) > 0
    held = pd.read_parquet(tmp_path / "run" / "data" / "paper_candles.parquet")
    truth = source_frame("BTCUSDT", "1m", str(held.index[0]), str(held.index[-1] + pd.Timedelta(minutes=1)))
    pd.testing.assert_frame_equal(held, truth, check_freq=False, check_index_type=False)  # final values only


def test_websocket_feed_is_refused_where_ccxt_has_no_kline_stream():
    from backtests.paper.stream import make_stream_exchange

    with pytest.raises(ValueError, match="downloads support exchanges"):
        make_stream_exchange("nope")


def test_lstm_paper_run_with_walk_forward_retraining_equals_a_backtest_of_the_same_bars(tmp_path):
    """The model strategy unchanged: its first model is fitted on the history before the start (before the start
    bar closes), a new fold's model every 4 bars as in a backtest; decisions, positions and equity equal."""
    import torch.optim  # noqa: F401  Adam's first use imports torch._dynamo (seconds): before the fast clock runs
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    model = {"window": 8, "hidden": 4, "train_bars": 300, "val_bars": 100, "epochs": 1, "walk_forward_test_bars": 4}
    config = BacktestConfig(name="paper-lstm", strategy="lstm", model=model, cache_dir=str(tmp_path / "models"),
                            data=DataConfig(symbol="BTC/USDT:USDT", timeframe="1m"))
    lines: list[str] = []
    with FakeExchange(clock=clock(speed=40)) as fake:  # 1.5 s a bar: a refit plus a decision fit in a busy bar
        exchange = make_exchange("binanceusdm", fake.ccxt_config("binanceusdm"))
        state = PaperRunner(config, tmp_path / "run", exchange, progress=lines.append, poll_seconds=0.05,
                            report_every=None, reconnect=RECONNECT, request_policy=QUICK).run(max_bars=6)
    assert any("prepared on the history before the start" in line for line in lines)
    start = pd.Timestamp(state.start)
    names = [m["name"] for m in state.models]
    assert names[0] == f"fold-{start:%Y%m%dT%H%MZ}" and len(names) >= 2  # retrained on schedule
    assert len({m["weights_sha256"] for m in state.models}) == len(names)
    result = reconcile(tmp_path / "run")
    assert state.missed == 0 and result.differences.empty, "\n".join(lines)
    assert (result.table["paper_position"] == result.table["backtest_position"]).all()
    assert result.paper.equity.iloc[-1] == pytest.approx(state.equity, abs=1e-9)
