"""``lstmbt compare`` end to end on the shipped data: flags and spec files, the output folder, exit codes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd
import pytest

from backtests.compare import add_compare_arguments, compare_command, spec_from_args
from backtests.compare.grid import DateRange


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lstmbt compare")
    add_compare_arguments(parser)
    return parser.parse_args(list(argv))


def test_compare_writes_the_folder_with_reports_errors_and_escaped_names(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = compare_command(_args(
        "--strategies", "sma_cross,buy_hold", "--symbols", "BTC/USDT:USDT", "--workers", "2", "--bootstrap", "200",
        "--ranges", "<i>bull</i>=2021-01-01:2021-01-31,void=2015-01-01:2015-01-31", "--out", str(out)))
    assert code == 0
    printed = capsys.readouterr().out
    assert f"comparison: {out / 'comparison.html'}" in printed
    assert "2 of 4 cells ran (2 failed)" in printed

    for name in ("comparison.csv", "comparison.md", "comparison.html", "sharpe_heatmap.png", "range_i-bull-i.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "range_void.png").exists()          # nothing ran in that range

    table = pd.read_csv(out / "comparison.csv", keep_default_na=False)
    assert list(table["status"]) == ["ok", "ok", "error", "error"]
    assert table["error"].iloc[2].startswith("DataError: only 0 bar(s)")
    assert float(table["Sharpe CI low"].iloc[0]) < float(table["Sharpe"].iloc[0]) < float(table["Sharpe CI high"].iloc[0])

    page = (out / "comparison.html").read_text()
    assert "<i>bull" not in page and "&lt;i&gt;bull&lt;/i&gt;" in page
    assert "<script" not in page and not re.search(r'src="(?!data:image/png;base64,)', page)
    links = re.findall(r'href="([^"]+)"', page)
    assert sorted(links) == sorted([
        "cells/i-bull-i__BTC-USDT-USDT__sma_cross/report.html", "cells/i-bull-i__BTC-USDT-USDT__buy_hold/report.html",
        "cells/void__BTC-USDT-USDT__sma_cross/error.txt", "cells/void__BTC-USDT-USDT__buy_hold/error.txt"])
    for link in links:
        assert (out / link).is_file(), link
    cell = out / "cells" / "i-bull-i__BTC-USDT-USDT__sma_cross"
    assert {"report.html", "metrics.json", "equity.png", "trades.csv"} <= {p.name for p in cell.iterdir()}
    assert "DataError: only 0 bar(s)" in (out / "cells" / "void__BTC-USDT-USDT__buy_hold" / "error.txt").read_text()
    assert "| sma_cross | &lt;i&gt;" not in (out / "comparison.md").read_text()      # Markdown keeps the raw name


def test_compare_exits_non_zero_only_when_every_cell_failed(tmp_path):
    assert compare_command(_args("--strategies", "buy_hold", "--ranges", "void=2015-01-01:2015-01-31",
                                 "--workers", "0", "--no-cell-reports", "--out", str(tmp_path / "a"))) == 1
    assert (tmp_path / "a" / "comparison.html").exists()
    assert compare_command(_args("--strategies", "buy_hold", "--rolling", "1M", "--start", "2022-01-01",
                                 "--end", "2022-02-28", "--workers", "0", "--no-cell-reports", "--bootstrap", "100",
                                 "--out", str(tmp_path / "b"))) == 0
    table = pd.read_csv(tmp_path / "b" / "comparison.csv")
    assert list(table["range"]) == ["2022-01-01", "2022-02-01"] and list(table["status"]) == ["ok", "ok"]


def test_flags_override_the_spec_file(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('[compare]\nstrategies = ["sma_cross", "buy_hold"]\nworkers = 3\n'
                    '[compare.ranges]\nbull = "2020-10-01:2021-04-15"\n'
                    '[data]\ntimeframe = "4h"\nstart = "2022-01-01"\nend = "2022-12-31"\n[broker]\nleverage = 2\n')
    spec = spec_from_args(_args("--config", str(path), "--rolling", "6M", "--leverage", "3", "--workers", "1"))
    assert spec.ranges == (DateRange("2022-01-01", "2022-01-01", "2022-06-30"),
                           DateRange("2022-07-01", "2022-07-01", "2022-12-31"))
    assert (spec.config.broker.leverage, spec.config.data.timeframe, spec.workers) == (3, "4h", 1)
    assert spec.strategies == ("sma_cross", "buy_hold")


def test_ranges_and_rolling_together_are_refused():
    with pytest.raises(ValueError, match="either --ranges or --rolling"):
        spec_from_args(_args("--ranges", "a=2022-01-01:2022-02-01", "--rolling", "1M"))


def test_example_spec_file_is_valid(tmp_path):
    example = Path(__file__).resolve().parents[1] / "backtests" / "configs" / "compare_example.toml"
    spec = spec_from_args(_args("--config", str(example), "--out", str(tmp_path)))
    assert [r.name for r in spec.ranges] == ["bull", "bear", "chop"]
    assert spec.strategies == ("lstm", "sma_cross", "buy_hold") and spec.out == str(tmp_path)


def test_no_cell_reports_writes_no_cell_folders(tmp_path):
    out = tmp_path / "c"
    assert compare_command(_args("--strategies", "buy_hold", "--ranges", "jan=2022-01-01:2022-01-15",
                                 "--workers", "0", "--no-cell-reports", "--bootstrap", "100", "--out", str(out))) == 0
    assert not (out / "cells").exists()
    assert 'href="' not in (out / "comparison.html").read_text()
