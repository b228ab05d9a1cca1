"""Backtrader's own chart (``cerebro.plot()``) saved as a PNG, headless: ``lstmbt backtest --plot-backtrader``.

Backtrader's plot module switches matplotlib to the TkAgg backend when imported, which fails (or opens windows)
on a server. :func:`save_backtrader_plot` imports it, then forces Agg, so the figure renders to a file only.
"""

from __future__ import annotations

import os
from pathlib import Path

from data_feeds.files import atomic_path

WIDTH, HEIGHT, DPI = 16.0, 9.0, 100


def _agg_pyplot():
    """pyplot on the Agg backend, after backtrader's plot module had its say."""
    import matplotlib

    import backtrader.plot  # noqa: F401  (its import selects TkAgg; Agg wins below)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_backtrader_plot(cerebro, path: str | os.PathLike, *, style: str = "candlestick") -> Path:
    """Render a cerebro that has run (``cerebro.run()`` done) with ``cerebro.plot()`` and write the first
    strategy's figure as a PNG at ``path`` (1,600 x 900 px, atomic write); returns the path.

    Raises ValueError when the cerebro has not run (nothing to plot).
    """
    if not getattr(cerebro, "runstrats", None):
        raise ValueError("cerebro has not run yet: call cerebro.run() before save_backtrader_plot")
    plt = _agg_pyplot()
    figures = cerebro.plot(style=style, iplot=False, volume=False, barup="#2e9e44", bardown="#d64541")
    fig = figures[0][0]
    try:
        _label_dates(fig, cerebro.datas[0])
        fig.set_size_inches(WIDTH, HEIGHT)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI)
    finally:
        for group in figures:
            for f in group:
                plt.close(f)
    return Path(path)


def _label_dates(fig, data) -> None:
    """Backtrader plots bars at x = 0, 1, 2 ... and, under Agg, leaves the x axis without labels: put UTC dates
    on the bottom axis (the bar index mapped back to the bar's time)."""
    import matplotlib.ticker as mticker
    from backtrader.utils.dateintern import num2date

    stamps = [num2date(x) for x in data.datetime.array]
    bottom = max(fig.axes, key=lambda ax: -ax.get_position().y0)

    def label(x, _pos):
        i = int(round(x))
        return stamps[i].strftime("%Y-%m-%d") if 0 <= i < len(stamps) else ""

    bottom.xaxis.set_major_locator(mticker.MaxNLocator(8, integer=True))
    bottom.xaxis.set_major_formatter(mticker.FuncFormatter(label))
    for tick in bottom.get_xticklabels():
        tick.set_visible(True)
    bottom.tick_params(axis="x", labelbottom=True)
    bottom.set_xlabel("time (UTC)")


__all__ = ["save_backtrader_plot"]
