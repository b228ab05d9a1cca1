"""Features are causal (truncation leaves past rows unchanged) and the scaler sees training rows only."""

import functools
import json

import numpy as np
import pandas as pd
import pytest

from data_feeds import DataError, load_market
from strategies.lstm.features import FEATURES, FeatureSpec, Scaler, compute_features, warmup_bars

ALL = tuple(FEATURES)


@functools.lru_cache(maxsize=1)
def market():
    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-01-31")
    return m.candles, m.funding


def first_changed_row(full: pd.DataFrame, cut: pd.DataFrame) -> int | None:
    """Position of the first row of ``cut`` that differs from the same row of ``full`` (None if all equal)."""
    a, b = full.iloc[:len(cut)].to_numpy(), cut.to_numpy()
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    bad = np.flatnonzero(~same.all(axis=1))
    return int(bad[0]) if len(bad) else None


@pytest.mark.parametrize("t", [0, 30, 169, 200, 400, 700])
def test_rows_up_to_t_do_not_change_when_later_data_is_removed(t):
    candles, funding = market()
    full = compute_features(candles, funding, ALL)
    cut_candles = candles.iloc[:t + 1]
    cut_funding = funding[funding.index <= cut_candles.index[-1] + pd.Timedelta(hours=1)]
    cut = compute_features(cut_candles, cut_funding, ALL, bar=pd.Timedelta(hours=1))
    assert first_changed_row(full, cut) is None


def test_the_truncation_check_catches_a_feature_that_peeks_one_bar_ahead(monkeypatch):
    leaky = FeatureSpec(lambda d: np.append(d.close[1:], np.nan) / d.close, 0, "next close / close (leaks)")
    monkeypatch.setitem(FEATURES, "leaky", leaky)
    candles, funding = market()
    full = compute_features(candles, funding, ("ret_1", "leaky"))
    cut = compute_features(candles.iloc[:201], funding, ("ret_1", "leaky"))
    assert first_changed_row(full, cut) == 200


def test_hand_computed_values_of_returns_and_range():
    idx = pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC")
    candles = pd.DataFrame({"open": 100.0, "high": [101, 102, 103, 104, 105.0], "low": [99, 100, 101, 102, 103.0],
                            "close": [100, 110, 99, 100, 100.0], "volume": 1.0}, index=idx)
    no_funding = pd.DataFrame({"funding_rate": []}, index=pd.DatetimeIndex([], tz="UTC"))
    f = compute_features(candles, no_funding, ("ret_1", "ret_4", "range", "funding"))
    np.testing.assert_allclose(f["ret_1"].to_numpy()[1:], np.log([1.1, 0.9, 100 / 99, 1.0]))
    assert np.isnan(f["ret_1"].iloc[0]) and f["ret_4"].isna().sum() == 4 and f["ret_4"].iloc[4] == 0.0
    np.testing.assert_allclose(f["range"], [0.02, 2 / 110, 2 / 99, 0.02, 0.02])
    assert (f["funding"] == 0.0).all()          # no funding data: zero funding


def test_funding_settled_at_a_bar_close_is_seen_by_that_bar_and_not_earlier():
    idx = pd.date_range("2024-01-01 05:00", periods=5, freq="1h", tz="UTC")        # 05:00 .. 09:00 opens
    candles = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=idx)
    funding = pd.DataFrame({"funding_rate": [0.0001, 0.0003]},
                           index=pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 08:00"], tz="UTC"))
    f = compute_features(candles, funding, ("funding",))["funding"]
    # bar 06:00 closes 07:00 (before 08:00): old rate; bar 07:00 closes 08:00: new rate.
    np.testing.assert_array_equal(f.to_numpy(), [0.0001, 0.0001, 0.0003, 0.0003, 0.0003])
    later = funding.iloc[1:]
    assert compute_features(candles, later, ("funding",))["funding"].isna().sum() == 2   # unknown before 08:00


def test_volume_zscore_is_zero_for_constant_volume_after_its_warmup():
    idx = pd.date_range("2024-01-01", periods=200, freq="1h", tz="UTC")
    candles = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 5.0}, index=idx)
    z = compute_features(candles, pd.DataFrame({"funding_rate": [0.0]}, index=idx[:1]), ("vol_z",))["vol_z"]
    assert z.isna().sum() == warmup_bars(("vol_z",)) == 167
    assert (z.iloc[167:] == 0.0).all()


def test_unknown_feature_name_lists_the_valid_ones():
    candles, funding = market()
    with pytest.raises(DataError, match="unknown feature.*'rsi_14'.*valid: ret_1, ret_4, ret_24, range, vol_z"):
        compute_features(candles, funding, ("ret_1", "rsi_14"))


def test_scaler_is_fitted_on_the_given_rows_only_and_survives_json():
    candles, funding = market()
    f = compute_features(candles, funding, ("ret_1", "range", "vol_z")).iloc[200:]
    train = f.iloc[:300]
    scaler = Scaler.fit(train)
    np.testing.assert_allclose(scaler.mean, train.mean().to_numpy())
    np.testing.assert_allclose(scaler.std, train.std(ddof=0).to_numpy())
    shocked = f.copy()
    shocked.iloc[300:] *= 1000.0                              # rows after the training slice
    again = Scaler.fit(shocked.iloc[:300])
    np.testing.assert_array_equal(again.mean, scaler.mean)
    restored = Scaler.from_dict(json.loads(json.dumps(scaler.to_dict())))
    np.testing.assert_array_equal(restored.transform(f), scaler.transform(f))
    assert np.abs(scaler.transform(train).mean(axis=0)).max() < 1e-5


def test_scaler_refuses_nan_training_rows():
    candles, funding = market()
    with pytest.raises(DataError, match="NaN"):
        Scaler.fit(compute_features(candles, funding, ("vol_z",)))     # warm-up rows are NaN
