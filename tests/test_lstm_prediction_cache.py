"""Batched predictions are reused from disk when model and inputs are the same, and only then."""

import functools

import numpy as np
import pandas as pd
import pytest

import strategies.lstm.predictor as predictor_module
from data_feeds import load_market
from strategies.lstm import ModelConfig, Predictor, train_model
from strategies.lstm.prediction_cache import weights_sha256

TRAIN_END = pd.Timestamp("2023-02-10", tz="UTC")
TINY = ModelConfig(window=8, hidden=8, train_bars=400, val_bars=120, epochs=1, batch_size=64)


@functools.lru_cache(maxsize=1)
def inputs():
    m = load_market("binanceusdm", "BTC/USDT:USDT", "1h", "2023-01-01", "2023-02-20")
    return m.candles, m.funding, train_model(m.candles, m.funding, TINY, cost=0.001, train_end=TRAIN_END)


def attach(cache_dir, candles=None):
    c, f, trained = inputs()
    p = Predictor(trained, cache_dir=cache_dir)
    p.attach(c if candles is None else candles, f, TRAIN_END)
    return p


def test_second_attach_reads_the_cache_instead_of_running_the_network(tmp_path, monkeypatch):
    first = attach(tmp_path)
    assert not first.cache_hit and len(list(tmp_path.glob("*.npy"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("the network ran although the predictions were cached")

    monkeypatch.setattr(predictor_module.Predictor, "_predict", refuse)
    second = attach(tmp_path)
    assert second.cache_hit
    pd.testing.assert_frame_equal(first.probability_frame(), second.probability_frame(), check_exact=True)
    assert [second.signal(i) for i in range(len(second))] == [first.signal(i) for i in range(len(first))]


def test_other_inputs_or_weights_miss_the_cache(tmp_path):
    attach(tmp_path)
    candles = inputs()[0].copy()
    candles.iloc[-1, candles.columns.get_loc("close")] *= 1.01
    assert not attach(tmp_path, candles).cache_hit
    assert len(list(tmp_path.glob("*.npy"))) == 2
    c, f, trained = inputs()
    assert weights_sha256(trained.model) == weights_sha256(trained.model)
    retrained = train_model(c, f, TINY.replace(seed=7), cost=0.001, train_end=TRAIN_END)
    assert weights_sha256(retrained.model) != weights_sha256(trained.model)


def test_a_corrupt_cache_file_is_recomputed_not_trusted(tmp_path):
    first = attach(tmp_path)
    (path,) = tmp_path.glob("*.npy")
    path.write_bytes(b"not an array")
    again = attach(tmp_path)
    assert not again.cache_hit
    np.testing.assert_array_equal(again.probability_frame().to_numpy(), first.probability_frame().to_numpy())
    assert np.load(path, allow_pickle=False).shape == (len(again), 3)
