"""A backtest's verdict and compare's verdict for the same cell agree, and both land in the trial ledger."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from backtests.compare import resolve_spec, run_and_write
from backtests.config import BacktestConfig
from backtests.ledger import read
from backtests.session import run_and_report


def test_backtest_and_compare_give_the_same_verdict_for_the_same_cell(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    config = BacktestConfig(name="cell", strategy="sma_cross", baselines=("flat",), seed=5, risk_free=0.03).replace(
        data={"symbol": "BTC/USDT:USDT", "timeframe": "1h", "start": "2021-01-01", "end": "2021-01-31"})
    folder, main, baselines = run_and_report(config, tmp_path / "run", ledger=ledger)
    assert [b.name for b in baselines] == ["flat", "buy_hold"]            # the 1x buy-and-hold always runs
    v = json.loads((folder / "metrics.json").read_text())["verdict"]
    assert v["reference"] == "buy_hold" and v["risk_free"] == 0.03 and v["seed"] == 5

    spec = resolve_spec(config.replace(baselines=()), {"strategies": ["sma_cross"], "workers": 0,
                                                       "cell_reports": False})
    out, outcomes, comparison = run_and_write(spec, tmp_path / "cmp", show_bar=False, ledger=ledger)
    row = pd.read_csv(out / "comparison.csv").iloc[0]
    assert row["p vs B&H"] == pytest.approx(v["p_vs_bh"], abs=1e-12)
    assert row["Sharpe"] == pytest.approx(v["sharpe"]) and row["B&H Sharpe"] == pytest.approx(v["bh_sharpe"])
    assert (row["Sharpe CI low"], row["Sharpe CI high"]) == pytest.approx((v["sharpe_low"], v["sharpe_high"]))
    assert row["Beats B&H"] == v["beats_bh"]

    # the ledger saw sma_cross, flat, buy_hold (backtest) and sma_cross again (compare): 3 configurations
    assert [e["kind"] for e in read(ledger)] == ["backtest"] * 3 + ["compare"]
    assert row["Trials"] == 3
    assert main.extras["trials"]["count"] == 3
