"""End to end on the shipped data: the CLI and the example scripts write a complete, reproducible report."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parent.parent
TINY_LSTM = """
name = "tiny-lstm"
strategy = "lstm"
baselines = ["buy_hold", "sma_cross", "flat"]
[data]
symbol = "BTC/USDT:USDT"
timeframe = "1h"
start = "2024-06-01"
end = "2024-06-20"
[model]
window = 16
hidden = 8
train_bars = 1500
val_bars = 400
epochs = 2
"""


def run(*args, env_cache=None):
    proc = subprocess.run([sys.executable, "-m", "backtests.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY_LSTM)
    return path


def test_lstm_backtest_writes_a_complete_report(tiny_config, tmp_path):
    out = tmp_path / "run"
    proc = run("backtest", "--config", str(tiny_config), "--out", str(out), "--cache-dir", str(tmp_path / "models"))
    assert "epoch 1/2" in proc.stdout and "bars/s" in proc.stdout
    assert "Sharpe" in proc.stdout and f"report: {out / 'report.html'}" in proc.stdout
    for name in ("report.html", "metrics.json", "equity.csv", "trades.csv", "fills.csv", "price.png", "equity.png",
                 "drawdown.png", "predictions.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    for name in ("lstm", "buy_hold", "sma_cross", "flat"):
        assert name in text
    equity = pd.read_csv(out / "equity.csv")
    assert len(equity) == 20 * 24
    html = (out / "report.html").read_text()
    assert "BTC/USDT:USDT" in html and "data:image/png;base64," in html and "http" not in html.split("<body")[1]


def test_same_seed_and_config_give_byte_identical_metrics(tiny_config, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run("backtest", "--config", str(tiny_config), "--out", str(a), "--cache-dir", str(tmp_path / "m1"))
    run("backtest", "--config", str(tiny_config), "--out", str(b), "--cache-dir", str(tmp_path / "m2"))  # retrains
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "fills.csv").read_bytes() == (b / "fills.csv").read_bytes()


def test_second_run_reuses_the_trained_model(tiny_config, tmp_path):
    run("backtest", "--config", str(tiny_config), "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "m"))
    proc = run("backtest", "--config", str(tiny_config), "--out", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "m"))
    assert "using cached model" in proc.stdout and "epoch 1/2" not in proc.stdout


@pytest.mark.parametrize("config", ["sma_cross.toml", "buy_hold.toml", "flat.toml"])
def test_shipped_example_configs_run(config, tmp_path):
    out = tmp_path / "run"
    run("backtest", "--config", f"backtests/configs/{config}", "--out", str(out))
    assert (out / "report.html").exists()


def test_user_csv_backtest(tmp_path):
    from data_feeds import load

    df = load("binanceusdm", "ETH/USDT:USDT", "1h", "2024-02-01", "2024-02-10")
    df.insert(0, "timestamp", df.index.strftime("%Y-%m-%dT%H:%M:%SZ"))
    df.to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "run"
    run("backtest", "--strategy", "sma_cross", "--baselines", "buy_hold", "--data", str(tmp_path / "mine.csv"),
        "--start", "2024-02-01", "--end", "2024-02-10", "--out", str(out))
    assert len(pd.read_csv(out / "equity.csv")) == 10 * 24


def test_example_script_runs_and_writes_a_report(tmp_path):
    out = tmp_path / "script"
    proc = subprocess.run([sys.executable, "backtests/sma_cross_eth_4h.py"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sma 12/48" in proc.stdout and "Sharpe" in proc.stdout


def test_lstm_example_script_runs_on_a_short_span(tmp_path):
    out = tmp_path / "script"
    proc = subprocess.run([sys.executable, "backtests/btc_lstm_1h.py", "--start", "2025-06-01", "--end", "2025-06-07",
                           "--out", str(out), "--cache-dir", str(tmp_path / "models")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1/" in proc.stdout and "Sharpe" in proc.stdout
    assert (out / "report.html").exists() and (out / "predictions.png").exists()


def test_lstm_eth_4h_example_config_runs(tmp_path):
    out = tmp_path / "run"
    run("backtest", "--config", "backtests/configs/lstm_eth_4h.toml", "--start", "2025-10-01", "--out", str(out),
        "--cache-dir", str(tmp_path / "models"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["model"]["cell"] == "gru"
    assert (out / "report.html").exists()
