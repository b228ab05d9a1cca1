"""make_folds: test spans tile the predicted span with no overlap and no gap; train precedes validation precedes test."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_feeds import DataError
from strategies.lstm.errors import ConfigError
from strategies.lstm.folds import make_folds


def hours(n: int, first: str = "2024-01-01") -> pd.DatetimeIndex:
    return pd.date_range(first, periods=n, freq="1h", tz="UTC")


def test_ten_bars_split_by_hand_sliding_and_expanding():
    index = hours(10)
    sliding = make_folds(index, train=3, val=2, test=2)
    assert [(f.train, f.val, f.test) for f in sliding] == [
        ((0, 3), (3, 5), (5, 7)), ((2, 5), (5, 7), (7, 9)), ((4, 7), (7, 9), (9, 10))]
    expanding = make_folds(index, train=3, val=2, test=2, expanding=True)
    assert [f.train for f in expanding] == [(0, 3), (0, 5), (0, 7)]
    assert [(f.val, f.test) for f in expanding] == [(f.val, f.test) for f in sliding]


def test_spans_hold_first_and_last_open_times_and_the_name_comes_from_the_training_end():
    index = hours(10)
    fold = make_folds(index, train=3, val=2, test=2)[1]
    assert fold.train_span == (index[2], index[4])
    assert fold.val_span == (index[5], index[6])
    assert fold.test_span == (index[7], index[8])
    assert fold.train_end == index[7] == pd.Timestamp("2024-01-01 07:00", tz="UTC")
    assert fold.name == "fold-20240101T0700Z"


def test_start_picks_the_first_predicted_bar_by_time():
    index = hours(20)
    folds = make_folds(index, train=3, val=2, test=4, start=pd.Timestamp("2024-01-01 08:30", tz="UTC"))
    assert folds[0].test == (9, 13) and folds[-1].test == (17, 20)


def test_a_step_shorter_than_test_hands_each_bar_to_the_newest_model():
    folds = make_folds(hours(12), train=3, val=2, test=4, step=2)
    assert [f.test for f in folds] == [(5, 7), (7, 9), (9, 11), (11, 12)]


def test_a_step_longer_than_test_is_refused_because_it_leaves_gaps():
    with pytest.raises(ConfigError, match="step 3 > test 2"):
        make_folds(hours(10), train=3, val=2, test=2, step=3)


def test_too_little_history_before_the_start_says_how_much_is_needed():
    with pytest.raises(DataError, match=r"needs 5 bars \(3 train \+ 2 validation\) before 2024-01-01 04:00.*have 4"):
        make_folds(hours(10), train=3, val=2, test=2, start=pd.Timestamp("2024-01-01 04:00", tz="UTC"))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_sizes_must_be_whole_positive_numbers(bad):
    with pytest.raises(ConfigError, match="test must be a whole number"):
        make_folds(hours(10), train=3, val=2, test=bad)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 300), train=st.integers(1, 40), val=st.integers(1, 40), test=st.integers(1, 60),
       step_cut=st.integers(0, 59), expanding=st.booleans(), extra=st.integers(0, 50))
def test_folds_tile_the_predicted_span_in_order_for_any_sizes(n, train, val, test, step_cut, expanding, extra):
    step = max(1, test - step_cut)
    first = train + val + extra
    if first >= n:
        return
    index = hours(n)
    folds = make_folds(index, train, val, test, step, expanding=expanding, start=index[first])
    assert folds[0].test[0] == first and folds[-1].test[1] == n                  # covers the predicted span
    for a, b in zip(folds, folds[1:]):
        assert a.test[1] == b.test[0]                                            # no gap, no overlap
    for k, f in enumerate(folds):
        assert f.number == k
        assert f.train[0] < f.train[1] == f.val[0] < f.val[1] == f.test[0] < f.test[1]   # train < val < test
        assert f.val_bars == val and 1 <= f.test_bars <= min(step, test)
        assert f.train[0] == (first - val - train if expanding else f.val[0] - train)
        assert f.train_span == (index[f.train[0]], index[f.train[1] - 1])
        assert f.test_span == (index[f.test[0]], index[f.test[1] - 1]) and f.train_end == index[f.test[0]]
    assert len({f.name for f in folds}) == len(folds)
