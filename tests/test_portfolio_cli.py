"""Portfolios from the outside: lstmbt backtest --symbols, TOML symbols, compare --symbol-sets, the lookahead audit
over portfolio strategies, and lstm_portfolio on a tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from backtests.cli import main
from backtests.config import BacktestConfig, BrokerConfig, DataConfig, load_config
from backtests.lookahead import audit_portfolio_lookahead
from tests.test_portfolio_engine import A, B, _config, _late_and_gappy

PAIR = "BTC/USDT:USDT,ETH/USDT:USDT"
EXAMPLE = Path(__file__).resolve().parents[1] / "strategies" / "examples" / "pairs_trade.py"


@pytest.fixture(autouse=True)
def _ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMBT_LEDGER", str(tmp_path / "ledger.jsonl"))


def test_backtest_user_pair_trade_from_a_file_writes_the_report(tmp_path, capsys):
    strategy = shutil.copy(EXAMPLE, tmp_path / "my_pairs.py")
    out = tmp_path / "run"
    code = main(["backtest", "--strategy", f"{strategy}:PairTrade", "--symbols", PAIR, "--timeframe", "1h",
                 "--start", "2025-02-01", "--end", "2025-02-10", "--margin", "isolated", "--leverage", "2",
                 "--weights", "BTC/USDT:USDT=0.6,ETH/USDT:USDT=0.4", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "coverage: BTC/USDT:USDT every bar; ETH/USDT:USDT every bar" in text
    assert "isolated margin, leverage 2, weights BTC/USDT:USDT 60%, ETH/USDT:USDT 40%" in text
    assert "by symbol (USDT): BTC/USDT:USDT" in text
    assert (out / "report.html").exists() and (out / "metrics.json").exists()
    notices = json.loads((out / "metrics.json").read_text())["run"]["data_span"].get("notices", [])
    assert not [n for n in notices if n.startswith("coverage")]     # full coverage: no warning banner
    runs = json.loads((out / "data" / "runs.json").read_text())["runs"]
    assert [r["name"] for r in runs] == ["my_pairs.py:PairTrade", "buy_hold"]      # the equal-weight reference
    saved = pd.read_parquet(out / "data" / runs[0]["folder"] / "fills.parquet")
    assert set(saved["symbol"]) <= {"BTC/USDT:USDT", "ETH/USDT:USDT"}


@pytest.mark.parametrize("flags, message", [
    (["--symbols", "BTC/USDT:USDT,BTC/USDT:USDT"], "symbols listed twice: BTC/USDT:USDT"),
    (["--symbols", "BTC/USDT:USDT,XYZ/USDT:USDT"], "no candles data for XYZ/USDT:USDT"),
    (["--symbols", PAIR, "--weights", "1,-2"], "weight of ETH/USDT:USDT must be a positive number"),
    (["--symbols", PAIR, "--weights", "BTC/USDT:USDT=x,ETH/USDT:USDT=1"], "--weights: 'x' is not a number"),
    (["--symbols", PAIR, "--weights", "BTC/USDT:USDT=1"], "weights: no weight for ETH/USDT:USDT"),
    (["--symbols", PAIR, "--margin", "portfolio"], "margin must be cross or isolated, got 'portfolio'"),
    (["--symbols", PAIR, "--strategy", "sma_cross"], "strategy sma_cross trades one symbol"),
    (["--strategy", "lstm_portfolio"], "lstm_portfolio is a portfolio strategy: give the symbols"),
])
def test_bad_portfolio_input_is_one_line_and_exit_2(flags, message, tmp_path, capsys):
    argv = ["backtest", "--strategy", "buy_hold", "--timeframe", "1h", "--start", "2025-01-01", "--end",
            "2025-01-05", "--out", str(tmp_path / "run"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lstmbt: error: ") and message in err[0]


def test_toml_symbols_margin_weights_and_single_symbol_config_unchanged(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('strategy = "lstm_portfolio"\nsymbols = ["BTC/USDT:USDT", "ETH/USDT:USDT"]\nmargin = "cross"\n'
                    'weights = { "BTC/USDT:USDT" = 2, "ETH/USDT:USDT" = 1 }\n')
    config = load_config(path)
    assert config.symbols == ("BTC/USDT:USDT", "ETH/USDT:USDT") and config.margin == "cross"
    assert config.weights == {"BTC/USDT:USDT": 2.0, "ETH/USDT:USDT": 1.0}
    assert config.to_dict()["symbols"] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert not {"symbols", "margin", "weights"} & set(BacktestConfig().to_dict())   # single-symbol runs record as before


def test_compare_symbol_sets_inline_and_on_dask():
    distributed = pytest.importorskip("distributed")
    from backtests.compare import resolve_spec, run_comparison
    from backtests.compare.executors import DaskExecutor, InlineExecutor
    from reports.comparison import build_comparison

    spec = resolve_spec(BacktestConfig(strategy="buy_hold", broker=BrokerConfig(leverage=2)),
                        {"strategies": ["buy_hold", "flat"], "symbol_sets": "majors=BTC/USDT:USDT+ETH/USDT:USDT",
                         "ranges": "w1=2025-03-01:2025-03-07", "cell_reports": False, "bootstrap": 200})
    assert [(c.strategy, c.symbol, c.symbols) for c in spec.cells()] == [
        ("buy_hold", "majors", ("BTC/USDT:USDT", "ETH/USDT:USDT")), ("flat", "majors", ("BTC/USDT:USDT", "ETH/USDT:USDT"))]
    inline = run_comparison(spec, InlineExecutor(), show_bar=False)
    assert all(o.ok for o in inline)
    assert inline[0].result.symbol == "BTC/USDT:USDT+ETH/USDT:USDT" and inline[0].result.portfolio is not None
    assert "buy_hold_1x" in inline[0].result.extras
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, DaskExecutor(client) as dask:
        remote = run_comparison(spec, dask, show_bar=False)
    pd.testing.assert_frame_equal(build_comparison(inline, n_boot=200).table,
                                  build_comparison(remote, n_boot=200).table)


def test_symbol_sets_are_checked():
    from backtests.compare import resolve_spec
    from backtests.config import ConfigError

    with pytest.raises(ValueError, match="needs at least two distinct symbols"):
        resolve_spec(BacktestConfig(strategy="buy_hold"), {"symbol_sets": "solo=BTC/USDT:USDT"})
    with pytest.raises(ConfigError, match="cannot read symbol set"):
        resolve_spec(BacktestConfig(strategy="buy_hold"), {"symbol_sets": "BTC/USDT:USDT+ETH/USDT:USDT"})
    spec = resolve_spec(BacktestConfig(strategy="buy_hold"),        # a TOML table; single symbols only when named
                        {"symbol_sets": {"majors": ["BTC/USDT:USDT", "ETH/USDT:USDT"]}, "symbols": ["ETH/USDT:USDT"]})
    assert [c.symbol for c in spec.cells()] == ["ETH/USDT:USDT", "majors"]


def test_lookahead_audit_flags_a_peeking_portfolio_and_passes_buy_hold():
    from strategies.peeking import PeekingPortfolio
    from strategies.loader import spec_of

    data = _late_and_gappy()
    clean = audit_portfolio_lookahead(_config("buy_hold"), bars=2, data=data)
    assert clean.ok and clean.symbol == f"{A}+{B}"
    peeking = audit_portfolio_lookahead(_config(spec_of(PeekingPortfolio)), bars=2, data=data)
    assert not peeking.ok and "target" in peeking.flagged


def test_lstm_portfolio_one_walk_forward_model_per_symbol(tmp_path):
    model = {"window": 8, "hidden": 4, "epochs": 1, "train_bars": 200, "val_bars": 80, "features": ["ret_1", "ret_4"],
             "walk_forward_test_bars": 120}
    config = BacktestConfig(strategy="lstm_portfolio", symbols=("BTC/USDT:USDT", "ETH/USDT:USDT"), model=model,
                            data=DataConfig(start="2025-01-01", end="2025-01-10"), broker=BrokerConfig(leverage=2),
                            weights=[2, 1], cache_dir=str(tmp_path / "models"))
    from backtests.portfolio.engine import run_portfolio

    result = run_portfolio(config)
    names = [m["name"] for m in result.models]
    assert len(names) == 4 and names[0].startswith("BTC/USDT:USDT fold-") and names[2].startswith("ETH/USDT:USDT")
    target = result.portfolio.target
    assert set(target.stack().unique()) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
    assert len(result.fold_boundaries) == 2
    # the audit reruns from the cached models: targets, and each symbol's features, scaler and probabilities
    audit = audit_portfolio_lookahead(config, bars=1)
    assert audit.ok and list(audit.components) == ["features", "scaler", "predictor", "target", "truncated"]
    assert audit.components["predictor"].rows > 0
