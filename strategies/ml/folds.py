"""Walk-forward folds, computed up front by one pure function of the bar index.

Each fold trains on ``train`` bars, stops early on the ``val`` bars right after them and predicts the ``test``
bars right after those. Successive folds move forward by ``step`` bars (default ``test``), so the test spans
are consecutive, never overlap, leave no gap and together cover every bar from ``start`` to the end of the index::

    fold 0:  |-- train --|-- val --|-- test --|
    fold 1:             |-- train --|-- val --|-- test --|          (sliding)
    fold 1:  |-- train ------------|-- val --|-- test --|           (expanding: training keeps its first bar)

With 1h bars, ``make_folds(index, train=17520, val=2880, test=720, start=t0)`` retrains every 30 days from
``t0`` on, each model seeing the two years + 120 days before its own test month. A fold is named by its
training end, the first bar it predicts (nothing at or after it is trained on): ``fold-20240701T0000Z``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from data_feeds.errors import DataError
from strategies.ml.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: row positions (half-open ``(first, stop)``) and open times (``(first, last)``).

    ``train_end`` is the first test bar; it is what :func:`strategies.ml.train.train_model` takes as
    ``train_end`` (the validation span ends just before it).
    """

    number: int
    train: tuple[int, int]
    val: tuple[int, int]
    test: tuple[int, int]
    train_span: tuple[pd.Timestamp, pd.Timestamp]
    val_span: tuple[pd.Timestamp, pd.Timestamp]
    test_span: tuple[pd.Timestamp, pd.Timestamp]

    @property
    def train_end(self) -> pd.Timestamp:
        """The first bar this fold predicts; training and validation read only bars before it."""
        return self.test_span[0]

    @property
    def name(self) -> str:
        """``fold-<training end as YYYYmmddTHHMMZ>``, e.g. ``fold-20240701T0000Z``."""
        return f"fold-{self.train_end.tz_convert('UTC'):%Y%m%dT%H%MZ}"

    @property
    def train_bars(self) -> int:
        return self.train[1] - self.train[0]

    @property
    def val_bars(self) -> int:
        return self.val[1] - self.val[0]

    @property
    def test_bars(self) -> int:
        return self.test[1] - self.test[0]


def _whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"folds: {name} must be a whole number >= {low}, got {value!r}")
    return value


def make_folds(index: pd.DatetimeIndex, train: int, val: int, test: int, step: int | None = None, *,
               expanding: bool = False, start: pd.Timestamp | None = None) -> list[Fold]:
    """Folds whose test spans tile ``[start, index[-1]]`` (see the module docstring).

    ``start``: the first bar to predict (default: the earliest bar with ``train + val`` bars before it).
    ``step``: bars between successive test starts; default ``test``. A ``step`` below ``test`` retrains more
    often: each test span then ends where the next fold's begins (the newest model takes over), so spans still
    tile without overlap. A ``step`` above ``test`` would leave bars unpredicted and raises ConfigError. The last
    fold's test span is cut at the end of the index. With 10 bars, train 3, val 2, test 2: test spans are
    rows 5-6, 7-8 and 9; sliding trains on rows 0-2, 2-4, 4-6; expanding on 0-2, 0-4, 0-6.
    Raises DataError when fewer than ``train + val`` bars precede ``start``.
    """
    train, val, test = _whole("train", train, 1), _whole("val", val, 1), _whole("test", test, 1)
    step = test if step is None else _whole("step", step, 1)
    if step > test:
        raise ConfigError(f"folds: step {step} > test {test} would leave {step - test} bars per fold unpredicted; "
                          f"use step <= test")
    if not isinstance(index, pd.DatetimeIndex) or not index.is_monotonic_increasing or not index.is_unique:
        raise DataError("folds need a sorted DatetimeIndex without duplicates")
    first = train + val if start is None else int(index.searchsorted(pd.Timestamp(start), side="left"))
    if first >= len(index):
        raise DataError(f"no bars at or after the fold start {start}; the data ends at "
                        f"{index[-1] if len(index) else 'nothing'}")
    if first < train + val:
        raise DataError(f"the first fold needs {train + val} bars ({train} train + {val} validation) before "
                        f"{index[first]}, have {first}; load data from earlier or start the folds later")
    folds: list[Fold] = []
    origin = first - val - train
    for number, test_start in enumerate(range(first, len(index), step)):
        test_stop = min(test_start + step, test_start + test, len(index))
        val_start = test_start - val
        train_start = origin if expanding else val_start - train
        rows = ((train_start, val_start), (val_start, test_start), (test_start, test_stop))
        spans = tuple((index[a], index[b - 1]) for a, b in rows)
        folds.append(Fold(number, *rows, *spans))
    return folds
