"""A user's path end to end, through the real command line: download from another server, list, backtest."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from fake_exchange import FakeExchange

ROOT = Path(__file__).parent.parent


def lstmbt(*args):
    return subprocess.run([sys.executable, "-m", "backtests.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_download_via_exchange_config_then_list_then_backtest_on_the_stored_data(tmp_path):
    store, out = tmp_path / "store", tmp_path / "run"
    with FakeExchange() as fake:
        config = tmp_path / "exchange.json"
        config.write_text(json.dumps(fake.ccxt_config("binanceusdm")))
        got = lstmbt("download", "--exchange", "binanceusdm", "--symbol", "ETH/USDT:USDT", "--timeframe", "1h",
                     "--start", "2024-03-01", "--end", "2024-03-10", "--data-dir", str(store),
                     "--exchange-config", str(config))
    assert got.returncode == 0, got.stderr
    listed = lstmbt("data", "list", "--data-dir", str(store))
    assert listed.returncode == 0 and "ETH/USDT:USDT" in listed.stdout and "funding" in listed.stdout
    ran = lstmbt("backtest", "--strategy", "buy_hold", "--baselines", "", "--symbol", "ETH/USDT:USDT",
                 "--start", "2024-03-01", "--end", "2024-03-10", "--data-dir", str(store), "--out", str(out))
    assert ran.returncode == 0, ran.stderr
    equity = pd.read_csv(out / "equity.csv")
    assert len(equity) == 10 * 24
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["rows"] == 240
    assert "store" in manifest["data"]["source"] and str(store) in manifest["data"]["source"]
