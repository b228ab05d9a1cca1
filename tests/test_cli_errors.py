"""Bad input on the command line: one line on stderr, exit status 2, never a traceback."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import make_candles, write_candles_csv


def lstmbt(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "backtests.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args,message", [
    (["--strategy", "smacross"], "unknown strategy 'smacross'; did you mean 'sma_cross'?"),
    (["--strategy", "flat", "--symbol", "DOGE/USDT:USDT"], "no candles data for DOGE/USDT:USDT"),
    (["--strategy", "flat", "--symbol", "BTCUSDT"], "malformed symbol 'BTCUSDT'"),
    (["--strategy", "flat", "--timeframe", "7m"], "unknown timeframe '7m'"),
    (["--strategy", "flat", "--start", "2024-03-01", "--end", "2024-02-01"], "empty or reversed date range"),
    (["--strategy", "flat", "--start", "2030-01-01", "--end", "2030-02-01"], "data covers"),
    (["--strategy", "flat", "--start", "yesterday-ish"], "start 'yesterday-ish' is not a date: write YYYY-MM-DD"),
    (["--strategy", "flat", "--data", "/no/such/file.csv"], "data file not found"),
    (["--config", "/no/such/config.toml"], "config file not found"),
    (["--strategy", "flat", "--leverage", "500"], "leverage must be between 1 and 125"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    proc = lstmbt("backtest", "--out", str(tmp_path / "out"), "--baselines", "", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_malformed_user_csv_is_one_line_and_exit_2(tmp_path):
    df = make_candles(np.linspace(100, 120, 100))
    df.iloc[50, 3] = np.nan
    write_candles_csv(df, tmp_path / "mine.csv")
    proc = lstmbt("backtest", "--strategy", "buy_hold", "--baselines", "", "--data", str(tmp_path / "mine.csv"),
                  "--start", "2024-01-01", "--end", "2024-01-04", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "NaN or missing values, first at 2024-01-03 02:00:00+00:00" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [[], ["backtest"], ["download"], ["data"]])
def test_help_shows_examples(command):
    proc = lstmbt(*command, "--help")
    assert proc.returncode == 0
    assert "example" in proc.stdout
