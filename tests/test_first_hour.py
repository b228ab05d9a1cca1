"""What a new user meets in the first hour, each as they would try it: pasted commands, spans past the data,
dates, names in the wrong case, the version, the shipped sample, compare on a user file, weekly bars, --seed."""

from __future__ import annotations

import argparse
import shlex

import numpy as np
import pandas as pd
import pytest

from backtests.cli import build_config, main, make_parser
from conftest import make_candles, write_candles_csv
from data_feeds import DataError, load, load_market
from data_feeds.dates import format_date, parse_date
from data_feeds.loader import resample_candles

BTC = "BTC/USDT:USDT"


def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lstmbt: error: ")
    return err


def test_the_suggested_download_command_parses_when_pasted_and_names_the_perpetual(capsys):
    err = _error(capsys, "backtest", "--strategy", "flat", "--baselines", "", "--symbol", "BTC/USDT",
                 "--start", "2024-01-01", "--end", "2024-01-31")
    assert "BTC/USDT is a spot symbol, the perpetual is BTC/USDT:USDT" in err
    pasted = shlex.split(err.split("fetch it with: ", 1)[1])
    assert pasted[:2] == ["lstmbt", "download"]
    args = make_parser().parse_args(pasted[1:])
    assert (args.symbol, args.start, args.end) == (BTC, "2024-01-01", "2024-01-31")
    err = _error(capsys, "backtest", "--strategy", "flat", "--baselines", "", "--symbol", "SOL/USDT:USDT",
                 "--start", "2024-01-01", "--end", "2024-01-31")
    args = make_parser().parse_args(shlex.split(err.split("fetch it with: ", 1)[1])[1:])
    assert (args.symbol, args.start, args.end) == ("SOL/USDT:USDT", "2024-01-01", "2024-01-31")


def test_a_span_past_the_data_is_an_error_naming_the_span_that_works(capsys):
    err = _error(capsys, "backtest", "--strategy", "buy_hold", "--baselines", "", "--start", "2025-12-01",
                 "--end", "2026-03-31")
    assert "the data ends before the requested span 2025-12-01 .. 2026-03-31" in err
    assert "(it covers 2019-09-08 17:00 .. 2025-12-31 23:00 UTC); use --start 2025-12-01 --end 2025-12-31" in err
    err = _error(capsys, "backtest", "--strategy", "buy_hold", "--baselines", "", "--start", "2019-06-01",
                 "--end", "2019-12-31")
    assert "the data starts after the requested span" in err and "use --start 2019-09-09 --end 2019-12-31" in err
    m = load_market("binanceusdm", BTC, "1h", "2025-12-01", "2025-12-31")       # the data's own end is fine
    assert m.candles.index[-1] == pd.Timestamp("2025-12-31 23:00", tz="UTC")


@pytest.mark.parametrize("text", ["01/02/2024", "2024/01/02", "2024-1-2", "20240102", "Jan 2 2024", "2024-02-30"])
def test_dates_are_only_yyyy_mm_dd(text):
    with pytest.raises(DataError, match="--start"):
        parse_date(text, what="--start")


def test_the_date_parser_reads_days_and_times_in_utc():
    assert parse_date("2024-06-30", is_end=True) == pd.Timestamp("2024-07-01", tz="UTC")
    assert parse_date("2024-06-30T12:00") == parse_date("2024-06-30 14:00:00+02:00") == pd.Timestamp(
        "2024-06-30 12:00", tz="UTC")
    assert format_date(pd.Timestamp("2024-01-01", tz="UTC")) == "2024-01-01"
    assert format_date(pd.Timestamp("2024-01-01 12:30", tz="UTC")) == "2024-01-01T12:30"


def test_did_you_mean_ignores_case(capsys):
    assert "unknown strategy 'LSTM'; did you mean 'lstm'?" in _error(capsys, "backtest", "--strategy", "LSTM")
    err = _error(capsys, "backtest", "--strategy", "flat", "--baselines", "", "--timeframe", "1H",
                 "--start", "2024-01-01", "--end", "2024-01-02")
    assert "unknown timeframe '1H'; did you mean '1h'?" in err


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("lstmbt ")


def test_data_list_shows_what_the_shipped_sample_covers(tmp_path, capsys):
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"no data stored in {tmp_path}" in out and "shipped sample" in out
    row = next(line.split() for line in out.splitlines() if line.split()[1:4] == [BTC, "candles", "1h"])
    assert row[4:] == ["2019-09-08", "17:00", "2025-12-31", "23:00", "55351"]


def test_weekly_bars_open_on_monday_as_on_exchanges():
    hours = make_candles(np.linspace(100, 130, 24 * 30), start="2024-01-03")      # a Wednesday
    weeks = resample_candles(hours, "1w")
    assert list(weeks.index.day_name().unique()) == ["Monday"] and weeks.index[0] == pd.Timestamp("2024-01-08",
                                                                                                   tz="UTC")
    assert weeks["open"].iloc[0] == hours.loc["2024-01-08 00:00", "open"]
    shipped = load("binanceusdm", BTC, "1w", "2024-01-03", "2024-03-31")
    assert set(shipped.index.day_name()) == {"Monday"}


def test_seed_means_the_model_seed_in_every_command():
    parser = make_parser()
    span = ["--start", "2024-01-01", "--end", "2024-01-31"]
    for command in (["backtest"], ["train"], ["check-lookahead"]):
        args = parser.parse_args([*command, "--seed", "7", *span])
        assert build_config(args).seed == 7, command
    from backtests.compare import spec_from_args

    args = parser.parse_args(["compare", "--strategies", "flat", "--seed", "7", *span])
    assert spec_from_args(args).config.seed == 7
    assert parser.parse_args(["check-lookahead", "--sample-seed", "3"]).sample_seed == 3


def test_compare_runs_on_a_user_candles_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_candles_csv(make_candles(100 * np.exp(np.cumsum(rng.normal(0, 0.01, 24 * 20)))), tmp_path / "mine.csv")
    out = tmp_path / "cmp"
    code = main(["compare", "--data", str(tmp_path / "mine.csv"), "--strategies", "buy_hold,flat",
                 "--ranges", "a=2024-01-02:2024-01-10,b=2024-01-11:2024-01-19", "--workers", "0",
                 "--no-cell-reports", "--bootstrap", "100", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "comparison.csv", keep_default_na=False)
    assert list(table["status"]) == ["ok"] * 4
    err = _error(capsys, "compare", "--data", str(tmp_path / "mine.csv"), "--symbols", f"{BTC},ETH/USDT:USDT",
                 "--strategies", "flat", "--start", "2024-01-02", "--end", "2024-01-10")
    assert "holds one market" in err
