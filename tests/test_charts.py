"""Charts: what each one draws, that position shading is one shape per run, PNG output, and speed."""

from __future__ import annotations


import matplotlib.dates as mdates
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from reports import ReportError
from reports.charts import (COLORS, DPI, PREDICTION_COLUMNS, WIDTH, drawdown_chart, equity_chart,
                            monthly_returns_chart, predictions_chart, price_chart, save_figure, sign_runs, strategy_color)


def hourly(values, start="2024-01-01", tz="UTC") -> pd.Series:
    return pd.Series(np.asarray(values, dtype="float64"),
                     index=pd.date_range(start, periods=len(values), freq="h", tz=tz))


def year_of_bars(n: int = 8760, flip_every: int = 1) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """Random-walk closes, a position flipping long/short every ``flip_every`` bars, and a fill per flip."""
    close = hourly(40_000 + np.cumsum(np.random.default_rng(1).normal(0, 100, n)))
    side = np.where((np.arange(n) // flip_every) % 2 == 0, 1.0, -1.0)
    position = pd.Series(side * 0.1, index=close.index)
    change = np.flatnonzero(np.diff(np.r_[0.0, position.to_numpy()]))
    fills = pd.DataFrame({"time": close.index[change], "size": np.diff(np.r_[0.0, position.to_numpy()])[change],
                          "price": close.to_numpy()[change], "kind": "market"})
    return close, position, fills


def shading(fig: Figure) -> dict[str, PolyCollection]:
    ax = fig.axes[0]
    out = {}
    for coll in ax.collections:
        if isinstance(coll, PolyCollection) and coll.get_label() in ("_long", "_short"):
            out[coll.get_label()[1:]] = coll
    return out


def test_sign_runs_group_bars_of_equal_sign_with_exclusive_ends():
    runs = sign_runs(hourly([0, 1, 1, -1]), pd.Timedelta(hours=1))
    t = pd.Timestamp("2024-01-01", tz="UTC")
    h = pd.Timedelta(hours=1)
    assert runs == [(t, t + h, 0), (t + h, t + 3 * h, 1), (t + 3 * h, t + 4 * h, -1)]
    assert sign_runs(hourly([]), h) == []


def test_position_shading_is_one_rectangle_per_run_not_per_bar():
    close, position, fills = year_of_bars(n=500, flip_every=50)        # 10 runs: 5 long, 5 short
    fig = price_chart(close, position, fills)
    shades = shading(fig)
    assert len(shades["long"].get_paths()) == 5 and len(shades["short"].get_paths()) == 5
    assert not fig.axes[0].patches                                      # no per-bar axvspan rectangles
    first_long = shades["long"].get_paths()[0].vertices[:, 0]
    # the first long run covers bars 0..49: from 00:00 to the open of bar 50
    assert first_long.min() == pytest.approx(mdates.date2num(np.datetime64("2024-01-01T00:00")))
    assert first_long.max() == pytest.approx(mdates.date2num(np.datetime64("2024-01-03T02:00")))
    assert tuple(shades["long"].get_facecolor()[0][:3]) == pytest.approx(
        tuple(int(COLORS["long"][i:i + 2], 16) / 255 for i in (1, 3, 5)))


def test_flat_bars_are_not_shaded():
    close = hourly(np.linspace(100, 110, 6))
    shades = shading(price_chart(close, hourly([0, 0, 1, 1, 0, 0])))
    assert set(shades) == {"long"} and len(shades["long"].get_paths()) == 1


def test_fills_are_drawn_as_entry_exit_and_liquidation_markers_at_their_prices():
    close = hourly([100, 101, 102, 103])
    fills = pd.DataFrame({"time": close.index[[1, 2, 3]], "size": [1.0, -2.0, 1.0], "price": [101.5, 102.5, 90.0],
                          "kind": ["market", "market", "liquidation"]})
    ax = price_chart(close, hourly([0, 1, -1, 0]), fills).axes[0]
    scatters = [c for c in ax.collections if not isinstance(c, PolyCollection)]
    prices = sorted(float(p[1]) for c in scatters for p in c.get_offsets())
    assert prices == [90.0, 101.5, 102.5]
    # +1 opens long, -2 flips to short (an entry), +1 is the forced close of the short
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["close", "long", "short", "long entry",
                                                                   "short entry", "liquidation"]


def test_time_axis_is_utc_whatever_the_index_timezone():
    tokyo = hourly([1, 2, 3], start="2024-01-01 09:00", tz="Asia/Tokyo")     # = 2024-01-01 00:00 UTC
    line = equity_chart(tokyo).axes[0].get_lines()[0]
    assert mdates.date2num(line.get_xdata()[0]) == pytest.approx(mdates.date2num(np.datetime64("2024-01-01T00:00")))


def test_equity_chart_draws_strategy_buy_and_hold_and_baselines_with_fixed_colours():
    equity, bh = hourly([100, 110, 120]), hourly([100, 90, 95])
    fig = equity_chart(equity, bh, [("sma", hourly([100, 101, 99]))], name="lstm")
    ax = fig.axes[0]
    labels = {line.get_label(): line for line in ax.get_lines()}
    assert {"lstm", "buy & hold", "sma"} <= set(labels)
    assert labels["lstm"].get_color() == COLORS["strategy"] and labels["buy & hold"].get_color() == COLORS["buy_hold"]
    assert labels["sma"].get_color() == strategy_color("sma")      # the same in every chart, whatever else is drawn
    alone = {l.get_label(): l.get_color() for l in equity_chart(equity, None, [("sma", bh)]).axes[0].get_lines()}
    assert alone["sma"] == labels["sma"].get_color()
    assert strategy_color("sma_cross") == "#ff7f0e" and strategy_color("buy_hold 1x") == COLORS["buy_hold"]
    assert ax.get_yscale() == "linear"
    assert equity_chart(equity, bh, log=True).axes[0].get_yscale() == "log"


def test_drawdown_chart_shows_percent_under_water_and_labels_the_deepest_point():
    ax = drawdown_chart(hourly([100, 120, 90, 130])).axes[0]
    line = ax.get_lines()[-1]
    assert list(line.get_ydata()) == pytest.approx([0, 0, -25, 0])
    assert any(t.get_text() == "max -25.0 %" for t in ax.texts)


def test_monthly_heatmap_annotates_each_month_and_the_year():
    index = pd.date_range("2024-01-01", "2024-02-29 23:00", freq="h", tz="UTC")
    equity = pd.Series(np.where(index.month == 1, 110.0, 99.0), index=index)
    equity.iloc[0] = 100.0
    texts = [t.get_text() for t in monthly_returns_chart(equity).axes[0].texts]
    # January 100 -> 110 = +10 %, February 110 -> 99 = -10 %, the year 100 -> 99 = -1 %
    assert texts == ["+10.0%", "-10.0%", "-1.0%"]


def test_predictions_chart_stacks_class_probabilities_under_the_price():
    close = hourly([100, 101, 102])
    probs = pd.DataFrame([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.6, 0.2, 0.2]], index=close.index,
                         columns=list(PREDICTION_COLUMNS))
    fig = predictions_chart(close, probs)
    assert len(fig.axes) == 3
    assert fig.axes[1].get_ylim() == (0.0, 1.0)
    assert len(fig.axes[1].collections) == 3                     # short, flat, long bands
    confidence = sorted(float(p[1]) for c in fig.axes[2].collections for p in c.get_offsets())
    assert confidence == [0.5, 0.6, 0.8]                         # the winning class per bar
    with pytest.raises(ReportError, match="long"):
        predictions_chart(close, probs.drop(columns="long"))


def test_prediction_columns_are_the_signal_class_names():
    from strategies.signal import CLASS_NAMES

    assert PREDICTION_COLUMNS == tuple(CLASS_NAMES)


def test_save_figure_writes_a_png_of_the_expected_width_and_leaves_no_temp_file(tmp_path):
    path = save_figure(equity_chart(hourly([100, 101, 102])), tmp_path / "sub" / "equity.png")
    image = mpimg.imread(path)
    assert image.shape[1] == round(WIDTH * DPI) and image.shape[0] > 100
    assert sorted(p.name for p in path.parent.iterdir()) == ["equity.png"]


def test_a_year_of_hourly_bars_flipping_every_bar_draws_a_handful_of_artists_and_thins_markers(tmp_path):
    # worst case: 8,760 runs, 8,760 fills. One axvspan per bar took over 4 s to render; the chart must draw a
    # constant number of artists instead (one shading collection per side, one marker collection per kind), and
    # with hundreds of fills it marks entries only, smaller. (A structural check: no timing assertion.)
    close, position, fills = year_of_bars(n=8760, flip_every=1)
    ax = price_chart(close, position, fills).axes[0]
    assert len(ax.collections) <= 4 and len(ax.patches) == 0
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "exit" not in labels and "8,760 fills: exits not marked" in labels
    sizes = {float(c.get_sizes()[0]) for c in ax.collections if len(c.get_offsets()) and len(c.get_sizes())}
    assert max(sizes) <= 14
    few = price_chart(*year_of_bars(n=500, flip_every=100)).axes[0]
    assert not [t for t in few.get_legend().get_texts() if "not marked" in t.get_text()]
