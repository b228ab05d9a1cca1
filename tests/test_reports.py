"""The report folder: files, deterministic metrics.json, a self-contained and escaped HTML page, the terminal table."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from backtests.result import FILL_COLUMNS, REJECT_COLUMNS, TRADE_COLUMNS, BacktestResult
from reports import compute_metrics, format_metrics_table, write_report
from reports.formatting import SUMMARY_KEYS, format_value, jsonable
from reports.metrics import result_metrics

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>"
N = 500


def make_result(name: str = "lstm", predictions: bool = True, strategy: str = "lstm") -> BacktestResult:
    """500 hourly bars: long 0.1 BTC over bars 101-200, short over 301-400, flat elsewhere; fees 5 USDT a fill."""
    index = pd.date_range("2024-01-30", periods=N, freq="h", tz="UTC", name="timestamp")
    close = 40_000 + np.cumsum(np.random.default_rng(3).normal(0, 80, N))
    prices = pd.DataFrame({"open": np.r_[close[0], close[:-1]], "high": close + 50, "low": close - 50,
                           "close": close, "volume": 1.0}, index=index)
    target = np.zeros(N)
    target[100:200], target[300:400] = 1.0, -1.0
    position = np.r_[0.0, target[:-1]] * 0.1                        # the decision fills on the next bar's open
    fee = np.where(np.diff(np.r_[0.0, position]) != 0, 5.0, 0.0)
    equity = 10_000 + np.cumsum(np.r_[0.0, position[1:] * np.diff(close)] - fee)
    t = index[[101, 201, 301, 401]]
    opens = prices["open"].to_numpy()[[101, 201, 301, 401]]
    fills = pd.DataFrame({"time": t, "size": [0.1, -0.1, -0.1, 0.1], "price": opens, "notional": opens * 0.1,
                          "fee": 5.0, "slippage": 0.0, "kind": "market", "liquidity": "taker"}, columns=FILL_COLUMNS)
    pnl = [0.1 * (opens[1] - opens[0]) - 10, 0.1 * (opens[2] - opens[3]) - 10]
    trades = pd.DataFrame({"entry_time": t[[0, 2]], "exit_time": t[[1, 3]], "direction": [1, -1], "size": 0.1,
                           "entry_price": opens[[0, 2]], "exit_price": opens[[1, 3]], "bars": 100,
                           "price_pnl": [p + 10 for p in pnl], "fees": 10.0, "funding": 0.0, "pnl": pnl,
                           "return_pct": [100 * p / (0.1 * e) for p, e in zip(pnl, opens[[0, 2]])],
                           "status": "closed"}, columns=TRADE_COLUMNS)
    probs = None
    if predictions:
        raw = np.random.default_rng(4).random((N, 3))
        probs = pd.DataFrame(raw / raw.sum(axis=1, keepdims=True), index=index, columns=["short", "flat", "long"])
    return BacktestResult(
        name=name, strategy=strategy, exchange="binanceusdm", symbol="BTC/USDT:USDT", timeframe="1h",
        initial_cash=10_000.0, equity=pd.Series(equity, index=index), position=pd.Series(position, index=index),
        target=pd.Series(target, index=index), prices=prices, fills=fills, trades=trades,
        funding=pd.Series(0.0, index=index), fees=pd.Series(fee, index=index),
        rejected=pd.DataFrame({"time": [index[250]], "size": [5.0], "price": [close[250]],
                               "reason": ["margin"]}, columns=REJECT_COLUMNS),
        config={"strategy": strategy, "leverage": 3, "note": "<b>bold</b> & co"},
        data_span={"start": index[0].isoformat(), "end": index[-1].isoformat(), "rows": N,
                   "source": "<img src=x onerror=alert(1)>", "gaps": 0},
        predictions=probs)


def flat_baseline() -> BacktestResult:
    base = make_result("flat", predictions=False, strategy="flat")
    index = base.equity.index
    zero = pd.Series(0.0, index=index)
    return dataclasses.replace(base, equity=pd.Series(10_000.0, index=index), position=zero, target=zero,
                               fills=pd.DataFrame(columns=FILL_COLUMNS), trades=pd.DataFrame(columns=TRADE_COLUMNS),
                               fees=zero, rejected=pd.DataFrame(columns=REJECT_COLUMNS))


def buy_hold_baseline() -> BacktestResult:
    """The report's one buy-and-hold: a 1x buy_hold run (here 0.25 BTC held from the first bar, 5 USDT fee)."""
    base = make_result("buy_hold", predictions=False, strategy="buy_hold")
    close = base.prices["close"]
    equity = 10_000 - 5.0 + 0.25 * (close - close.iloc[0])
    return dataclasses.replace(base, equity=equity, position=pd.Series(0.25, index=close.index),
                               config={"strategy": "buy_hold", "broker": {"leverage": 1.0}, "seed": 7},
                               rejected=pd.DataFrame(columns=REJECT_COLUMNS))


BASELINES = lambda: [buy_hold_baseline(), flat_baseline(), ("sma <b>", make_result().equity * 0.5 + 5_000)]  # noqa


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(make_result(), out, baselines=BASELINES())
    return out


def test_the_report_folder_holds_the_page_the_data_and_the_charts(report):
    names = {p.name for p in report.iterdir()}
    assert names == {"report.html", "metrics.json", "equity.csv", "trades.csv", "fills.csv", "rejected.csv",
                     "price.png", "equity.png", "drawdown.png", "monthly.png", "predictions.png", "rolling.png",
                     "exposure.png", "trades.png", "attribution.png"}
    for png in report.glob("*.png"):
        image = mpimg.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 500 and image.std() > 0, png.name


def test_without_predictions_there_is_no_predictions_chart_even_in_a_reused_folder(tmp_path):
    write_report(make_result(), tmp_path)
    assert (tmp_path / "predictions.png").exists()
    write_report(make_result(predictions=False), tmp_path)
    assert not (tmp_path / "predictions.png").exists()
    assert "Model class probabilities" not in (tmp_path / "report.html").read_text()


def test_metrics_json_holds_every_column_with_nan_as_null_and_iso_times(report):
    doc = json.loads((report / "metrics.json").read_text())
    assert [(r["name"], r["role"]) for r in doc["results"]] == [
        ("lstm", "strategy"), ("buy_hold", "buy_and_hold"), ("flat", "baseline"), ("sma <b>", "baseline")]
    strategy, _, flat, _ = (r["metrics"] for r in doc["results"])
    expected = result_metrics(make_result())
    assert strategy["Return [%]"] == pytest.approx(expected["Return [%]"], rel=1e-15)
    assert strategy["Trades"] == 2 and strategy["Fees paid [USDT]"] == 20.0
    assert strategy["Start"] == "2024-01-30T00:00:00+00:00"
    assert flat["Sharpe"] is None and flat["Win rate [%]"] is None         # NaN written as null
    assert doc["run"]["symbol"] == "BTC/USDT:USDT" and doc["run"]["config"]["leverage"] == 3


def test_metrics_json_is_byte_identical_for_the_same_inputs(report, tmp_path):
    write_report(make_result(), tmp_path, baselines=BASELINES())
    assert (tmp_path / "metrics.json").read_bytes() == (report / "metrics.json").read_bytes()
    text = (report / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2) + "\n"


def test_the_page_is_self_contained_with_embedded_pngs_and_no_scripts(report):
    page = (report / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower() and "url(" not in page
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == 9
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert image.shape[1] > 500
    # readable on phones: viewport, a capped column, tables that scroll sideways instead of overflowing
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "max-width:1100px" in page and "overflow-x:auto" in page


def test_user_supplied_strings_are_shown_as_text_not_markup(tmp_path):
    evil = make_result(name=EVIL, strategy=EVIL)
    page = write_report(evil, tmp_path, baselines=[("<i>x</i>", evil.equity)], title=f"run {EVIL}").read_text()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page   # data_span
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page    # config
    assert "<i>x</i>" not in page and "&lt;i&gt;x&lt;/i&gt;" in page                    # baseline name


def test_the_page_shows_the_run_header_metrics_columns_trades_and_config(report):
    page = (report / "report.html").read_text()
    header = re.search(r'<p class="sub">(.*?)</p>', page).group(1)
    assert "BTC/USDT:USDT" in header and "1h" in header and "2024-01-30 00:00" in header and "500 bars" in header
    columns = re.findall(r"<th>(.*?)</th>", page.split('<table class="metrics">')[1].split("</thead>")[0])
    assert columns == ["metric", "lstm", "buy_hold", "flat", "sma &lt;b&gt;"]
    assert "<td>Sharpe</td>" in page and "<td>long</td>" in page and "<td>short</td>" in page
    assert "1 order(s) were rejected" in page
    assert "&quot;leverage&quot;: 3" in page


def test_equity_csv_has_one_row_per_bar_with_position_target_and_buy_and_hold(report):
    df = pd.read_csv(report / "equity.csv")
    result = make_result()
    assert list(df.columns) == ["time", "equity", "position", "target", "buy_hold"] and len(df) == N
    assert list(pd.to_datetime(df["time"], utc=True)) == list(result.equity.index)
    assert np.array_equal(df["equity"].to_numpy(), result.equity.to_numpy())      # full float precision
    assert np.array_equal(df["buy_hold"].to_numpy(), buy_hold_baseline().equity.to_numpy())   # the 1x run
    assert df["position"].iloc[101] == 0.1 and df["target"].iloc[300] == -1.0


def test_trades_and_fills_csv_round_trip_with_iso_utc_times(report):
    trades, fills = pd.read_csv(report / "trades.csv"), pd.read_csv(report / "fills.csv")
    # plus the model's confidence in the trade's side at the bar that decided each entry
    assert list(trades.columns) == [*TRADE_COLUMNS[:3], "confidence", *TRADE_COLUMNS[3:]] and len(trades) == 2
    probs = make_result().predictions
    assert trades["confidence"].tolist() == pytest.approx([probs["long"].iloc[100], probs["short"].iloc[300]])
    assert list(fills.columns) == FILL_COLUMNS and len(fills) == 4
    assert fills["time"].iloc[0] == "2024-02-03T05:00:00Z"                        # bar 101
    assert trades["pnl"].tolist() == make_result().trades["pnl"].tolist()


def test_writes_leave_no_temporary_files(report):
    assert not [p.name for p in report.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_terminal_table_has_one_row_per_key_metric_and_one_column_per_result():
    main, flat = make_result(), flat_baseline()
    text = format_metrics_table([main, flat])
    lines = text.splitlines()
    assert lines[0].split() == ["metric", "lstm", "flat"]
    assert [line.rsplit(None, 2)[0] for line in lines[1:]] == list(SUMMARY_KEYS)
    m = result_metrics(main)
    row = {line.rsplit(None, 2)[0]: line.split()[-2:] for line in lines[1:]}
    assert row["Return [%]"][0] == f"{m['Return [%]']:,.2f}"
    assert row["Trades"] == ["2", "0"] and row["Win rate [%]"][1] == "-" and row["Fees paid [USDT]"][0] == "20.00"


def test_terminal_table_accepts_ready_made_metrics():
    metrics = compute_metrics(pd.Series([100.0, 110.0], index=pd.date_range("2024", periods=2, freq="h", tz="UTC")),
                              pd.DataFrame(), "1h")
    assert "10.00" in format_metrics_table([("mine", metrics)]).splitlines()[1]


def test_values_are_formatted_by_their_unit():
    assert format_value("Fees paid [USDT]", 1234.5) == "1,234.50"
    assert format_value("Trades", np.int64(42)) == "42"
    assert format_value("Sharpe", float("nan")) == "-" and format_value("Profit factor", math.inf) == "inf"
    assert format_value("Max drawdown duration [days]", 2.25) == "2.2"
    assert format_value("Start", pd.Timestamp("2024-01-01 09:00", tz="Asia/Tokyo")) == "2024-01-01 00:00"


def test_jsonable_keeps_undefined_null_and_infinite_as_inf_strings():
    data = {"a": np.float64("nan"), "b": math.inf, "b2": -np.inf, "c": pd.Timestamp("2024-01-01", tz="UTC"), "d": np.int64(3),
            "e": [np.float32(0.5), None, pd.NaT], "f": {"g": Path("x")}}
    assert jsonable(data) == {"a": None, "b": "inf", "b2": "-inf", "c": "2024-01-01T00:00:00+00:00", "d": 3,
                              "e": [0.5, None, None], "f": {"g": "x"}}


def test_importing_reports_loads_neither_backtrader_nor_torch_nor_pyplot():
    code = ("import reports, reports.charts, sys; "
            "bad = [m for m in ('backtrader', 'torch', 'matplotlib.pyplot') if m in sys.modules]; "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_verdict_comes_first_in_the_page_and_in_metrics_json(report):
    page = (report / "report.html").read_text()
    assert page.index("<h2>Verdict</h2>") < page.index("<h2>Key charts</h2>") < page.index("<h2>Performance</h2>")
    doc = json.loads((report / "metrics.json").read_text())
    v = doc["verdict"]
    assert v["reference"] == "buy_hold" and v["seed"] == 0 and v["n_boot"] == 1000
    assert v["beats_bh"] in ("yes, with confidence", "only by luck", "no")
    assert v["sharpe_low"] <= v["sharpe"] <= v["sharpe_high"] and 0 < v["p_vs_bh"] <= 1
    assert f"lstm {v['sentence']}." in page.replace("&amp;", "&").replace("&#x27;", "'")
    assert "Worst drawdowns" in page and "confidence" in page


def test_no_row_contradicts_the_buy_and_hold_column(report):
    doc = json.loads((report / "metrics.json").read_text())
    bh = next(r for r in doc["results"] if r["role"] == "buy_and_hold")
    assert bh["metrics"]["Return [%]"] == pytest.approx((buy_hold_baseline().equity.iloc[-1] / 10_000 - 1) * 100)
    for r in doc["results"]:
        assert not [k for k in r["metrics"] if "buy" in k.lower() or "b&h" in k.lower()]


def test_without_a_1x_buy_hold_run_the_estimate_is_labelled(tmp_path):
    write_report(make_result(), tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["verdict"]["reference"].startswith("buy & hold (1x, est. from closes")
    assert doc["results"][1]["role"] == "buy_and_hold"


def test_ledger_trials_show_in_the_page_but_not_in_metrics_json(tmp_path):
    result = make_result()
    result.extras["trials"] = {"count": 7, "sharpes": [0.5, 1.0, -0.3, 0.2, 0.0, 1.4, 0.9], "ledger": "L.jsonl"}
    write_report(result, tmp_path, baselines=[buy_hold_baseline()])
    page = (tmp_path / "report.html").read_text()
    assert "7 configurations have been tried on this span" in page and "Deflated Sharpe ratio" in page
    assert "trials" not in (tmp_path / "metrics.json").read_text()      # reruns stay byte-identical


def test_fold_table_lists_train_validation_test_and_threshold(tmp_path):
    result = make_result()
    result.config = {**result.config, "model": {"train_bars": 100, "val_bars": 48}}
    result.fold_boundaries = [result.equity.index[0], result.equity.index[240]]
    result.models = [{"name": "a", "min_confidence": 0.45, "val_accuracy": 0.51},
                     {"name": "b", "min_confidence": 0.5, "val_accuracy": 0.48}]
    from reports.sections import fold_table

    table = fold_table(result)
    assert list(table.columns[:5]) == ["fold", "train", "validation", "test", "threshold"]
    assert table["validation"].iloc[0] == "2024-01-28 .. 2024-01-29" and table["threshold"].tolist() == [0.45, 0.5]
    assert table["test"].iloc[1] == "2024-02-09 .. 2024-02-19" and table["val accuracy"].iloc[1] == 0.48


def test_a_run_that_never_traded_draws_no_empty_panels(tmp_path):
    write_report(flat_baseline(), tmp_path, baselines=[buy_hold_baseline()])
    names = {p.name for p in tmp_path.glob("*.png")}
    assert not names & {"exposure.png", "attribution.png", "trades.png", "predictions.png"}
    assert {"equity.png", "drawdown.png", "price.png"} <= names
    assert json.loads((tmp_path / "metrics.json").read_text())["verdict"]["beats_bh"] == "n/a"
