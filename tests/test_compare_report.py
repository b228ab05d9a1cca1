"""The comparison table and pages from hand-made outcomes: verdicts, escaping, a grid where everything failed."""

from __future__ import annotations

import math

import pytest

from backtests.compare.grid import Cell, CellOutcome, DateRange
from reports.comparison import (VERDICT_CONFIDENT, VERDICT_LUCK, VERDICT_NA, VERDICT_NO, build_comparison,
                                comparison_html, comparison_markdown, verdict)


@pytest.mark.parametrize("sharpe, bh, p, expected", [
    (1.2, 0.4, 0.03, VERDICT_CONFIDENT),
    (1.2, 0.4, 0.05, VERDICT_CONFIDENT),       # the threshold itself counts
    (1.2, 0.4, 0.06, VERDICT_LUCK),
    (1.2, 0.4, math.nan, VERDICT_LUCK),
    (0.4, 0.4, 0.001, VERDICT_NO),             # equal is not beating
    (-2.0, -1.0, 0.0, VERDICT_NO),
    (math.nan, 0.4, 0.01, VERDICT_NA),         # flat: no spread, no Sharpe
])
def test_verdict_needs_a_higher_sharpe_and_a_paired_p_value_under_the_bar(sharpe, bh, p, expected):
    assert verdict(sharpe, bh, p, 0.95) == expected


def _failed(strategy: str, range_name: str, error: str) -> CellOutcome:
    return CellOutcome(Cell(strategy, DateRange(range_name, "2015-01-01", "2015-01-31"), "BTC/USDT:USDT"), error=error)


def test_a_grid_where_every_cell_failed_still_has_a_table():
    c = build_comparison([_failed("buy_hold", "void", "DataError: no rows"), _failed("flat", "void", "DataError: x")])
    assert list(c.table["status"]) == ["error", "error"]
    assert list(c.table["Beats B&H"]) == ["", ""]
    assert c.trials == 0 and math.isnan(c.expected_max_sharpe)


def test_pages_escape_user_strings():
    c = build_comparison([_failed("buy_hold", "a|b <script>x</script>", "DataError: <b>bad</b> | worse")])
    md = comparison_markdown(c, title="t|1")
    assert "| buy_hold | a\\|b <script>x</script> |" in md and "<b>bad</b> \\| worse" in md
    page = comparison_html(c, [], {0: 'cells/x"y/error.txt'}, title="<t>")
    assert "<script>" not in page and "<b>bad" not in page and "<t>" not in page
    assert "a|b &lt;script&gt;x&lt;/script&gt;" in page and 'href="cells/x&quot;y/error.txt"' in page
