"""Reports for lstmbt backtests: metrics, charts and the report folder, from ``BacktestResult`` objects only.

>>> from reports import write_report, format_metrics_table
>>> write_report(result, Path("runs/demo"))          # doctest: +SKIP
>>> print(format_metrics_table([result, baseline]))  # doctest: +SKIP

Never imports backtrader or torch: a result can be reported anywhere pandas and matplotlib run.
"""

from reports.errors import ReportError
from reports.formatting import format_metrics_table
from reports.metrics import buy_and_hold_equity, compute_metrics, drawdown, monthly_returns
from reports.verdict import Verdict, verdict
from reports.writer import write_report

__all__ = ["ReportError", "Verdict", "buy_and_hold_equity", "compute_metrics", "drawdown", "format_metrics_table",
           "monthly_returns", "verdict", "write_report"]
