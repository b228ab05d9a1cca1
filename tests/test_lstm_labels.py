"""Labels: the trade a decision at bar t makes (open[t+1] -> open[t+1+horizon]), net of the round-trip cost."""

import numpy as np
import pandas as pd
import pytest

from data_feeds import DataError
from strategies.lstm.labels import forward_returns, make_labels, round_trip_cost
from strategies.signal import Signal


def candles_with_opens(opens):
    idx = pd.date_range("2024-01-01", periods=len(opens), freq="1h", tz="UTC")
    o = np.asarray(opens, dtype=float)
    return pd.DataFrame({"open": o, "high": o * 1.01, "low": o * 0.99, "close": o, "volume": 1.0}, index=idx)


def test_round_trip_cost_counts_fee_and_slippage_twice():
    assert round_trip_cost(0.0004, 0.0001) == pytest.approx(0.001)


def test_labels_by_hand_with_horizon_one_and_a_cost_threshold():
    #        bar:   0      1      2       3      4      5
    candles = candles_with_opens([100.0, 100.0, 101.0, 100.95, 99.0, 99.0])
    labels = make_labels(candles, horizon=1, cost=0.001)
    # bar 0 trades open[1]=100 -> open[2]=101: +0.995 % > cost   -> LONG
    # bar 1 trades 101 -> 100.95: -0.05 %, smaller than cost       -> FLAT
    # bar 2 trades 100.95 -> 99: -1.95 %                           -> SHORT
    # bar 3 trades 99 -> 99: 0                                     -> FLAT
    # bars 4, 5: no open[t+2] in the data                          -> <NA>
    assert labels.iloc[:4].tolist() == [Signal.LONG, Signal.FLAT, Signal.SHORT, Signal.FLAT]
    assert labels.iloc[4:].isna().all() and str(labels.dtype) == "Int8"
    assert [Signal(int(v)).class_index for v in labels.iloc[:4]] == [2, 1, 0, 1]


def test_a_move_smaller_than_cost_is_flat_and_a_larger_one_is_not():
    opens = [100.0, 100.0, 100.0 * np.exp(0.0009), 100.0, 100.0, 100.0 * np.exp(-0.0011)]
    labels = make_labels(candles_with_opens(opens), horizon=1, cost=0.001)
    assert labels.iloc[0] == Signal.FLAT        # +0.09 % < 0.1 % cost
    assert labels.iloc[3] == Signal.SHORT       # -0.11 % beyond the cost
    assert make_labels(candles_with_opens(opens), horizon=1, cost=0.0).iloc[0] == Signal.LONG


def test_forward_return_spans_horizon_bars_from_the_next_open():
    candles = candles_with_opens([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    r = forward_returns(candles, horizon=2)
    np.testing.assert_allclose(r.iloc[:3], np.log([40 / 20, 50 / 30, 60 / 40]))
    assert r.iloc[3:].isna().all()               # last horizon + 1 = 3 bars


def test_label_at_t_ignores_bar_t_own_open_and_close():
    candles = candles_with_opens([100.0, 100.0, 102.0, 102.0])
    before = make_labels(candles, 1, 0.001).iloc[0]
    candles.iloc[0] = [1.0, 1.0, 1.0, 1.0, 1.0]   # bar 0 itself is known when deciding; it is not the trade
    assert make_labels(candles, 1, 0.001).iloc[0] == before == Signal.LONG


def test_bad_horizon_or_cost_is_refused():
    with pytest.raises(DataError, match="horizon must be at least 1"):
        make_labels(candles_with_opens([1.0, 2.0, 3.0]), horizon=0, cost=0.001)
    with pytest.raises(DataError, match="non-negative"):
        make_labels(candles_with_opens([1.0, 2.0, 3.0]), horizon=1, cost=-0.1)
