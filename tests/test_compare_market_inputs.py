"""``compare --mark-data --market-rules``: every cell gets the user's mark prices and market rules, in this process
and on a Dask cluster (the rules travel with each task, so a worker needs no shared disk)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from backtests.compare import add_compare_arguments, run_comparison, spec_from_args
from backtests.config import ConfigError
from backtests.compare.executors import DaskExecutor, InlineExecutor


def _files(d):
    idx = pd.date_range("2024-01-01", periods=72, freq="1h", tz="UTC")
    close = np.full(72, 2.0)
    candles = pd.DataFrame({"timestamp": idx.as_unit("ms").asi8, "open": close, "high": close * 1.001,
                            "low": close * 0.999, "close": close, "volume": 1e6})
    mark = candles.drop(columns="volume").copy()
    mark.loc[40, "low"] = 1.7                       # a mark wick the last price never makes: 10x long liquidated
    candles.to_csv(d / "abc.csv", index=False)
    mark.to_csv(d / "mark.csv", index=False)
    (d / "rules.json").write_text(json.dumps({"min_notional": 5.0, "taker_fee": 0.0004, "maker_fee": 0.0001,
                                              "liquidation_fee": 0.01, "tiers": [
        {"floor": 0, "cap": None, "max_leverage": 20, "maintenance_rate": 0.02}]}))


def _args(d, *extra):
    parser = argparse.ArgumentParser()
    add_compare_arguments(parser)
    return parser.parse_args(["--strategies", "buy_hold", "--symbols", "ABC/USDT:USDT", "--timeframe", "1h",
                              "--start", "2024-01-02", "--end", "2024-01-03", "--data", str(d / "abc.csv"),
                              "--no-cell-reports", "--bootstrap", "100", "--leverage", "10", *extra])


def test_every_cell_runs_on_the_users_mark_prices_and_market_rules_locally_and_on_dask(tmp_path):
    distributed = pytest.importorskip("distributed")
    _files(tmp_path)
    spec = spec_from_args(_args(tmp_path, "--mark-data", str(tmp_path / "mark.csv"),
                                "--market-rules", str(tmp_path / "rules.json")))
    (inline,) = run_comparison(spec, InlineExecutor(), show_bar=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, DaskExecutor(client) as dask:
        (remote,) = run_comparison(spec, dask, show_bar=False)
    for outcome in (inline, remote):
        fills = outcome.result.fills
        assert outcome.error is None and list(fills["kind"]) == ["market", "liquidation"]   # the mark wick
        assert fills["fee"].iloc[0] == pytest.approx(0.0004 * fills["notional"].iloc[0], rel=1e-12)  # rules' fee
        assert outcome.result.config["data"]["market_rules"] == str(tmp_path / "rules.json")
    pd.testing.assert_series_equal(inline.result.equity, remote.result.equity)
    # without the mark file the same cell is not liquidated: the flag reached the cell
    (plain,) = run_comparison(spec_from_args(_args(tmp_path, "--market-rules", str(tmp_path / "rules.json"))),
                              InlineExecutor(), show_bar=False)
    assert list(plain.result.fills["kind"]) == ["market"]


def test_a_mark_file_without_a_candles_file_is_refused(tmp_path):
    args = _args(tmp_path, "--mark-data", str(tmp_path / "mark.csv"))
    args.path = None
    with pytest.raises(ConfigError, match="mark-price file"):
        spec_from_args(args)
