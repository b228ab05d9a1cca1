"""The portfolio report (reports/portfolio.py, reports/portfolio_charts.py and the writer's hook) on a hand-built
PortfolioBook: the shipped BTC and ETH 1h candles, synthetic positions simulated bar by bar (fees, slippage,
funding every 8 h, an isolated 10x ETH long that gets liquidated), ETH starting two days late and with a gap."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtests.attribution import ATTRIBUTION_TERMS, attribute_pnl
from backtests.result import FILL_COLUMNS, LIQUIDATION_COLUMNS, REJECT_COLUMNS, TRADE_COLUMNS, BacktestResult, \
    PortfolioBook
from reports import portfolio as pf
from reports import write_report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data_feeds" / "sample"
SYMBOLS = ["BTC/USDT:USDT", "ETH/USDT:USDT"]
START, BARS = pd.Timestamp("2025-02-01", tz="UTC"), 24 * 40
LATE, GAP = 48, (400, 405)             # ETH has no candles for the first 48 bars and none in bars 400..404
FEE, SLIP, FUND, LIQ_FEE, MMR = 0.0005, 0.0002, 0.0001, 0.0125, 0.005


def _candles(symbol: str) -> pd.DataFrame:
    name = f"binanceusdm_{symbol.split('/')[0]}-USDT-USDT_1h.csv.gz"
    df = pd.read_csv(SAMPLE / name)
    df.index = pd.to_datetime(df.pop("timestamp"), unit="ms", utc=True)
    return df.loc[START:].iloc[:BARS].astype("float64")


def _simulate(prices: pd.DataFrame, want: np.ndarray, lev: float, symbol: str) -> dict:
    """One symbol's book bar by bar. ``want[i]``: contracts held from bar i's open (0 where there is no candle);
    fills at the open with slippage and a taker fee, funding at 00/08/16 UTC on the position carried in, an
    isolated margin of notional / ``lev`` and liquidation at the close when maintenance reaches the position's
    margin plus unrealised PnL (then flat for the rest of the run)."""
    n = len(prices)
    o, c = prices["open"].to_numpy(), prices["close"].to_numpy()
    pos = np.zeros(n); pnl = np.zeros(n); ratio = np.zeros(n); maint = np.zeros(n); paid = np.zeros(n)
    fills, liqs, funding_paid = [], [], 0.0
    held, entry, last_close, dead = 0.0, 0.0, np.nan, False
    for i in range(n):
        if not np.isfinite(c[i]):                  # no candle: nothing trades, the position is carried
            pos[i] = held
            continue
        step = 0.0
        if np.isfinite(last_close):
            step += held * (o[i] - last_close)
        if prices.index[i].hour % 8 == 0 and held:
            fee_f = held * o[i] * FUND
            funding_paid += fee_f
            paid[i] = fee_f
            step -= fee_f
        target = 0.0 if dead else want[i]
        size = target - held
        if abs(size) > 1e-12:
            price = o[i] * (1 + SLIP * np.sign(size))
            fee = abs(size) * price * FEE
            fills.append({"time": prices.index[i], "size": size, "price": price, "notional": abs(size) * price,
                          "fee": fee, "slippage": abs(size) * o[i] * SLIP, "kind": "market", "liquidity": "taker",
                          "symbol": symbol})
            step += -size * (price - o[i]) - fee
            entry = price if held == 0 or np.sign(target) != np.sign(held) else entry
            held = target
        step += held * (c[i] - o[i])
        if held:
            margin = abs(held) * entry / lev
            upnl = held * (c[i] - entry)
            maint[i] = abs(held) * c[i] * MMR
            ratio[i] = maint[i] / (margin + upnl)
            if ratio[i] >= 1.0:
                fee = abs(held) * c[i] * LIQ_FEE
                fills.append({"time": prices.index[i], "size": -held, "price": c[i], "notional": abs(held) * c[i],
                              "fee": fee, "slippage": 0.0, "kind": "liquidation", "liquidity": "liquidation",
                              "symbol": symbol})
                liqs.append({"time": prices.index[i], "symbol": symbol, "size": -held, "price": c[i], "fee": fee,
                             "loss": -(held * (c[i] - entry) - fee)})
                step -= fee
                held, dead, maint[i] = 0.0, True, 0.0
        pos[i], pnl[i], last_close = held, step, c[i]
    final = float(pd.Series(c).dropna().iloc[-1])
    attr = attribute_pnl(fills, funding_paid, held, final)
    return {"position": pos, "pnl": pnl, "funding": paid, "ratio": ratio, "maintenance": maint, "fills": fills,
            "liqs": liqs, "attribution": attr, "notional": np.where(np.isfinite(c), pos * c, np.nan)}


def make_portfolio(mode: str = "isolated", cash: float = 10_000.0) -> BacktestResult:
    """BTC traded long/short at 2x on half the cash from bar 5; ETH from bar 48, long at 10x on 30 % of the cash
    from bar 100 until it is liquidated, then flat."""
    btc = _candles(SYMBOLS[0])
    index = btc.index
    eth = _candles(SYMBOLS[1]).reindex(index)
    eth.iloc[:LATE] = np.nan
    eth.iloc[GAP[0]:GAP[1]] = np.nan
    i = np.arange(BARS)
    want_btc = np.where((i // 120) % 2 == 0, 1.0, -1.0) * 0.5 * cash * 2 / btc["close"].iloc[0]
    want_btc[i < 5] = 0.0
    want_eth = np.where(i >= 100, 0.3 * cash * 10 / eth["close"].iloc[100], 0.0)
    want_eth[i < LATE] = 0.0
    books = {SYMBOLS[0]: _simulate(btc, np.round(want_btc, 3), 2.0, SYMBOLS[0]),
             SYMBOLS[1]: _simulate(eth, np.round(want_eth, 2), 10.0, SYMBOLS[1])}
    frame = lambda key: pd.DataFrame({s: b[key] for s, b in books.items()}, index=index)  # noqa: E731
    pnl = frame("pnl")
    equity = cash + pnl.sum(axis=1).cumsum()
    maintenance = frame("maintenance")
    ratio = frame("ratio").max(axis=1) if mode == "isolated" else maintenance.sum(axis=1) / equity
    fills = pd.DataFrame([f for b in books.values() for f in b["fills"]]).sort_values("time", kind="stable")
    liqs = pd.DataFrame([x for b in books.values() for x in b["liqs"]], columns=LIQUIDATION_COLUMNS)
    attribution = pd.DataFrame({s: b["attribution"].as_dict() for s, b in books.items()}).T[list(ATTRIBUTION_TERMS)]
    first_eth = index[LATE]
    book = PortfolioBook(
        symbols=list(SYMBOLS), margin_mode=mode, weights={SYMBOLS[0]: 0.5, SYMBOLS[1]: 0.5},
        prices={SYMBOLS[0]: btc, SYMBOLS[1]: eth}, position=frame("position"), notional=frame("notional"),
        target=frame("position").apply(np.sign), pnl=pnl, attribution=attribution, margin_balance=equity,
        maintenance=maintenance, margin_ratio=ratio, liquidations=liqs,
        coverage={SYMBOLS[0]: {"first": index[0], "last": index[-1], "missing_bars": 0, "gaps": []},
                  SYMBOLS[1]: {"first": first_eth, "last": index[-1], "missing_bars": LATE + GAP[1] - GAP[0],
                               "gaps": [[index[0], index[LATE - 1]], [index[GAP[0]], index[GAP[1] - 1]]]}})
    funding = frame("funding").sum(axis=1)
    fees = fills.groupby("time")["fee"].sum().reindex(index, fill_value=0.0)
    return BacktestResult(
        name="pairs", strategy="pairs", exchange="binanceusdm", symbol="+".join(SYMBOLS), timeframe="1h",
        initial_cash=cash, equity=equity.rename("equity"), position=frame("position")[SYMBOLS[0]],
        target=book.target[SYMBOLS[0]], prices=btc, fills=fills.reset_index(drop=True)[FILL_COLUMNS + ["symbol"]],
        trades=pd.DataFrame(columns=TRADE_COLUMNS), funding=funding, fees=fees,
        rejected=pd.DataFrame(columns=REJECT_COLUMNS),
        config={"strategy": "pairs", "broker": {"leverage": 3.0, "margin": mode}, "seed": 0},
        data_span={"start": index[0].isoformat(), "end": index[-1].isoformat(), "rows": BARS, "gaps": 0},
        portfolio=book)


def equal_weight(result: BacktestResult) -> BacktestResult:
    """The equal-weight buy-and-hold run the engine passes as the reference (here from the closes)."""
    book = result.portfolio
    eq = pf.equal_weight_buy_and_hold(book, result.initial_cash, cost=FEE)
    empty = pd.DataFrame(columns=FILL_COLUMNS)
    return dataclasses.replace(result, name="buy_hold", strategy="buy_hold", equity=eq, fills=empty, portfolio=None,
                               fees=result.fees * 0, config={"strategy": "buy_hold", "broker": {"leverage": 1.0},
                                                             "seed": 0})


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    return make_portfolio()


def test_fixture_is_consistent(result):
    """The simulation's own books agree: per-bar PnL sums to the equity change, attribution to the PnL."""
    book = result.portfolio
    assert len(book.liquidations) == 1 and book.liquidations["symbol"].iloc[0] == SYMBOLS[1]
    assert book.margin_ratio.max() >= 1.0
    for s in SYMBOLS:
        assert book.attribution.loc[s].sum() == pytest.approx(book.pnl[s].sum(), abs=1e-6)


def test_attribution_table_sums_to_account_change(result):
    table = pf.attribution_table(result.portfolio)
    assert list(table.index) == [*SYMBOLS, "total"]
    assert list(table.columns) == [*pf.SOURCES, "total"]
    change = result.final_equity - result.initial_cash
    assert table.loc["total", "total"] == pytest.approx(change, abs=1e-6)
    assert table.loc[SYMBOLS, "total"].to_numpy() == pytest.approx(table.loc[SYMBOLS, list(pf.SOURCES)].sum(axis=1))
    assert table.loc[SYMBOLS[1], "liquidation"] < 0 and table.loc[SYMBOLS[0], "liquidation"] == 0
    assert pf.attribution_sums(result.portfolio, result)
    broken = dataclasses.replace(result, equity=result.equity + 5.0)
    assert not pf.attribution_sums(result.portfolio, broken)
    assert pf.attribution_residual(result.portfolio, broken) == pytest.approx(5.0)


def test_time_series_and_statistics(result):
    book = result.portfolio
    contrib = pf.contribution(book)
    assert contrib.sum(axis=1).to_numpy() == pytest.approx((result.equity - result.initial_cash).to_numpy())
    exp = pf.exposure(book, result.equity)
    assert exp["gross"].to_numpy() == pytest.approx(exp[SYMBOLS].abs().sum(axis=1).to_numpy())
    assert exp[SYMBOLS[1]].iloc[:LATE].eq(0).all() and exp["gross"].max() > 5      # ETH at 10x, BTC at 2x
    corr = pf.pnl_correlation(book)
    daily = pf.pnl_correlation(book, "1D")
    assert corr.loc[SYMBOLS[0], SYMBOLS[0]] == pytest.approx(1.0) and abs(daily.iloc[0, 1]) <= 1
    stats = pf.margin_stats(book)
    assert stats["liquidations"] == 1 and stats["liquidated_symbols"] == [SYMBOLS[1]]
    assert stats["max_margin_ratio_pct"] >= 100 and 0 < stats["time_above_warning_pct"] < 100
    notices = pf.coverage_notices(book)
    assert len(notices) == 1 and notices[0].startswith("ETH/USDT:USDT has no data before") and "1 gap" in notices[0]
    index = book.position.index                       # the late start is listed as a gap too: shaded once
    assert pf.coverage_spans(book) == [(SYMBOLS[1], index[0], index[LATE]),
                                       (SYMBOLS[1], index[GAP[0]], index[GAP[1]])]
    table = pf.symbol_table(book, result.equity, result.initial_cash)
    assert table["contribution [USDT]"].sum() == pytest.approx(result.final_equity - result.initial_cash)
    assert table.set_index("symbol").loc[SYMBOLS[1], "liquidations"] == 1
    sources = pf.pnl_sources(result).sum()                      # the report's attribution chart, per bar
    totals = pf.attribution_table(book).loc["total"]
    assert sources[list(pf.SOURCES)].to_numpy() == pytest.approx(totals[list(pf.SOURCES)].to_numpy(), abs=1e-6)
    bh = pf.equal_weight_buy_and_hold(book, 10_000.0)
    assert bh.iloc[:LATE].to_numpy() == pytest.approx(5_000 * btc_growth(book)[:LATE] + 5_000)


def btc_growth(book) -> np.ndarray:
    close = book.prices[SYMBOLS[0]]["close"]
    return (close / close.iloc[0]).to_numpy()


def test_report_folder(result, tmp_path):
    """The folder ``lstmbt backtest`` writes (report and saved data); ``lstmbt report RUN_DIR`` re-renders it from
    the saved data, the book surviving the round trip, and metrics.json comes out byte for byte the same."""
    from backtests.persist import RunFolderError, load_runs, rerender, write_run_folder

    page = write_run_folder(tmp_path, result, [equal_weight(result)])
    html = page.read_text()
    for name in ("portfolio_attribution.csv", "positions_by_symbol.csv", "margin.csv", "portfolio_contribution.png",
                 "portfolio_exposure.png", "portfolio_correlation.png", "portfolio_margin.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    doc = json.loads((tmp_path / "metrics.json").read_text())
    block = doc["portfolio"]
    assert block["symbols"] == SYMBOLS and block["margin_mode"] == "isolated"
    assert block["attribution"]["total"]["total"] == pytest.approx(result.final_equity - result.initial_cash)
    assert block["margin"]["liquidations"] == 1 and block["notices"]
    assert doc["verdict"]["reference"] == pf.EQUAL_WEIGHT_NAME
    assert "Portfolio" in html and pf.EQUAL_WEIGHT_NAME in html and "has no data before" in html
    attr = pd.read_csv(tmp_path / "portfolio_attribution.csv")
    assert attr["total"].iloc[-1] == pytest.approx(result.final_equity - result.initial_cash)
    positions = pd.read_csv(tmp_path / "positions_by_symbol.csv")
    assert len(positions) == BARS and positions["ETH/USDT:USDT close"].isna().sum() == LATE + GAP[1] - GAP[0]
    # the per-symbol metric figures come from the whole book, not from the first symbol's position
    metrics = doc["results"][0]["metrics"]
    assert metrics["Max leverage [x]"] == pytest.approx(pf.exposure(result.portfolio, result.equity)["gross"].max())

    first = (tmp_path / "metrics.json").read_bytes()
    main, baselines = load_runs(tmp_path)
    book, back = result.portfolio, main.portfolio
    assert back is not None and baselines[0].portfolio is None and back.symbols == book.symbols
    for key in ("position", "notional", "pnl", "attribution", "liquidations"):
        pd.testing.assert_frame_equal(getattr(back, key), getattr(book, key), check_freq=False)
    pd.testing.assert_series_equal(back.margin_ratio, book.margin_ratio, check_freq=False)
    assert back.coverage[SYMBOLS[1]]["first"] == book.coverage[SYMBOLS[1]]["first"]
    rerender(tmp_path)
    assert (tmp_path / "metrics.json").read_bytes() == first
    next(tmp_path.glob("data/0-*/portfolio/book.json")).unlink()
    with pytest.raises(RunFolderError, match="book.json is missing"):
        load_runs(tmp_path)


def test_cross_mode_and_no_reference(tmp_path):
    """Cross margin, no buy-and-hold run given: the equal-weight buy-and-hold is estimated from the closes."""
    res = make_portfolio("cross")
    write_report(res, tmp_path)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["portfolio"]["margin_mode"] == "cross"
    assert doc["verdict"]["reference"].startswith(pf.EQUAL_WEIGHT_NAME + " (est.")


def test_single_symbol_report_has_no_portfolio_part(tmp_path):
    from test_reports import buy_hold_baseline, make_result
    write_report(make_result(), tmp_path, baselines=[buy_hold_baseline()])
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert "portfolio" not in doc and not list(tmp_path.glob("portfolio*"))
    assert "Portfolio" not in (tmp_path / "report.html").read_text()


def test_comparison_cell_of_a_symbol_set(result):
    """A compare cell that runs a symbol set (``--symbol-sets majors=...``: the set's name is the cell's symbol)
    shows the name in the symbol column and, without its buy-and-hold run, is judged against the equal-weight
    estimate, not against the first symbol alone."""
    from backtests.compare.grid import Cell, CellOutcome, DateRange
    from reports.comparison import build_comparison, method_notes, reference_equity

    @dataclasses.dataclass(frozen=True)
    class SetCell(Cell):                               # the engine's Cell carries the set's members as ``symbols``
        symbols: tuple = ()

    cell = SetCell("pairs", DateRange("feb", "2025-02-01", "2025-03-12"), "majors", tuple(SYMBOLS))
    c = build_comparison([CellOutcome(cell, result)], n_boot=50)
    table = c.table
    assert method_notes(c)[-1].startswith("Symbol set majors: BTC/USDT:USDT + ETH/USDT:USDT in one account")
    assert table["symbol"].tolist() == ["majors"] and table["status"].tolist() == ["ok"]
    assert table["Exposure [%]"].iloc[0] == pytest.approx(pf.portfolio_metrics(result.portfolio,
                                                                               result.equity)["Exposure [%]"])
    assert reference_equity(result).equals(pf.estimated_reference(result))


def test_report_of_an_engine_run(tmp_path):
    """The engine's own PortfolioBook (two weeks of the shipped BTC and ETH, buy_hold at 3x in cross margin)
    through the report: the tables sum, the reference is the equal-weight buy-and-hold. Skipped where the
    portfolio engine is not installed."""
    engine = pytest.importorskip("backtests.portfolio.engine")
    from backtests.config import BacktestConfig, BrokerConfig, DataConfig

    config = BacktestConfig(strategy="buy_hold", symbols=tuple(SYMBOLS), margin="cross",
                            data=DataConfig(start="2025-02-01", end="2025-02-14"), broker=BrokerConfig(leverage=3))
    main, baselines = engine.run_portfolio_with_baselines(config)
    write_report(main, tmp_path, baselines=baselines)
    doc = json.loads((tmp_path / "metrics.json").read_text())
    assert doc["verdict"]["reference"] == pf.EQUAL_WEIGHT_NAME and doc["portfolio"]["margin_mode"] == "cross"
    assert pf.attribution_sums(main.portfolio, main)
    assert abs(doc["portfolio"]["attribution_residual_usdt"]) < 1e-6
    assert (tmp_path / "portfolio_margin.png").exists()
